"""`ssltk export`: ONNX (onnxruntime) and TorchScript reproduce the bundle's features within 1e-4, any batch size."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from typer.testing import CliRunner

import ssltk
from probe_helpers import write_tiny_bundle
from ssltk.cli import build_app
from ssltk.errors import UnknownNameError, UsageError
from ssltk.exporter import TOLERANCE, ExportMismatch, export, preprocess_path
from ssltk.plugins import get_plugin_manager

runner = CliRunner()
HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx/onnxruntime not installed: pip install 'ssltk[export]'")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("export") / "bundle", size=24)


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


def torch_features(bundle: Path, x: torch.Tensor) -> np.ndarray:
    """The reference: the bundle as plain timm loads it."""
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    with torch.no_grad():
        return model(x).numpy()


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.mark.slow
@needs_onnx
def test_onnx_matches_torch_at_other_batch_sizes(bundle, tmp_path):
    import onnx
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    result = ssltk.export(bundle, format="onnx", out=out)
    assert result.out == out and result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    dim0 = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim0.HasField("dim_value")  # the batch axis is symbolic
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = torch.randn(n, 3, 24, 24, generator=torch.Generator().manual_seed(n))
        got = session.run(["features"], {"pixel_values": x.numpy()})[0]
        want = torch_features(bundle, x)
        assert got.shape == want.shape == (n, result.num_features)
        assert np.abs(got - want).max() <= 1e-4
    info = json.loads(result.preprocess_file.read_text())
    config = json.loads((bundle / "config.json").read_text())["pretrained_cfg"]
    assert info["mean"] == pytest.approx(config["mean"]) and info["std"] == pytest.approx(config["std"])
    assert info["input_size"] == [3, 24, 24] and info["num_features"] == result.num_features
    assert not list(tmp_path.glob(".*tmp*"))  # temporary files moved or removed


def test_torchscript_matches_torch(bundle, tmp_path):
    result = export(bundle, format="torchscript", out=tmp_path / "m.torchscript.pt")
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOLERANCE
    loaded = torch.jit.load(str(result.out))
    x = torch.randn(4, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert np.abs(loaded(x).numpy() - torch_features(bundle, x)).max() <= 1e-4
    assert result.preprocess_file == tmp_path / "m.torchscript.preprocess.json"


@needs_onnx
def test_both_formats_side_by_side_in_the_bundle(bundle, tmp_path):
    import shutil

    copy = Path(shutil.copytree(bundle, tmp_path / "b"))
    onnx_result = export(copy, format="onnx")
    ts_result = export(copy, format="torchscript")  # was refused: both wrote model.preprocess.json
    assert onnx_result.out == copy / "model.onnx" and ts_result.out == copy / "model.torchscript.pt"
    assert onnx_result.preprocess_file != ts_result.preprocess_file
    assert json.loads(onnx_result.preprocess_file.read_text())["format"] == "onnx"
    assert json.loads(ts_result.preprocess_file.read_text())["format"] == "torchscript"


def test_preprocess_names_keep_the_format():
    assert preprocess_path(Path("a/model.onnx")).name == "model.onnx.preprocess.json"
    assert preprocess_path(Path("a/model.torchscript.pt")).name == "model.torchscript.preprocess.json"


def test_mismatch_is_an_error_and_leaves_nothing(bundle, tmp_path, monkeypatch):
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda path: (lambda m: (lambda x: m(x) + 1.0))(real_load(path)))
    with pytest.raises(ExportMismatch, match="differs from the torch model by 1.00e[+]00"):
        export(bundle, format="torchscript", out=tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_prints_the_summary(app, bundle, tmp_path):
    out = tmp_path / "m.pt"
    result = runner.invoke(app, ["export", str(bundle), "--format", "torchscript", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["out"] == str(out) and data["num_features"] == 96 and data["max_abs_diff"] <= TOLERANCE


def test_errors_are_one_line(app, bundle, tmp_path, monkeypatch):
    (tmp_path / "taken.pt").write_bytes(b"x")
    cases = [
        (["--format", "tflite"], "tflite"),
        (["--format", "torchscript", "--out", str(tmp_path / "taken.pt")], "--overwrite"),
        (["--format", "torchscript", "--out", str(tmp_path / "no" / "m.pt")], "no folder"),
    ]
    for args, expect in cases:
        assert expect in one_line_error(runner.invoke(app, ["export", str(bundle), *args]))
    assert "ssltk.json" in one_line_error(runner.invoke(app, ["export", str(tmp_path), "--format", "torchscript"]))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the extra were not installed
    line = one_line_error(runner.invoke(app, ["export", str(bundle), "--out", str(tmp_path / "m.onnx")]))
    assert "pip install 'ssltk[export]'" in line  # brackets kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.pt"]
    with pytest.raises(UnknownNameError):
        export(bundle, format="tflite")
    with pytest.raises(UsageError, match="exists"):
        export(bundle, format="torchscript", out=tmp_path / "taken.pt")
