"""`ssltk embed`: one row per (episode, timestep, camera) with keys and ego fields, features equal to the
backbone's on the same frames, Parquet and .npy read back, CLI and Python, errors one line."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from typer.testing import CliRunner

import ssltk
from probe_helpers import ego_tracks, write_probe_shards, write_tiny_bundle
from ssltk.cli import build_app
from ssltk.data.shards import iter_segments, resolve_shards
from ssltk.embedding import embed
from ssltk.errors import UnknownNameError, UsageError
from ssltk.plugins import get_plugin_manager

runner = CliRunner()
EPISODES, LENGTH, CAMERAS, SIZE = 2, 12, ("front", "left"), 24
needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                                   reason="pyarrow not installed: pip install 'ssltk[parquet]'")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    # overlapping segments: frames seen twice must be written once
    return write_probe_shards(tmp_path_factory.mktemp("embed") / "shards", episodes=EPISODES, length=LENGTH,
                              cameras=CAMERAS, size=SIZE, segment_length=8, overlap=3, ego_fields=("speed", "yaw_rate"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("embed") / "bundle", size=SIZE)


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


@pytest.fixture(scope="module")
def reference(data, bundle) -> dict[tuple[str, int, str], np.ndarray]:
    """(episode, timestep, camera) -> the pooled features of plain timm on that frame, decoded with PIL."""
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    cfg = json.loads((bundle / "config.json").read_text())["pretrained_cfg"]
    mean, std = torch.tensor(cfg["mean"]).view(3, 1, 1), torch.tensor(cfg["std"]).view(3, 1, 1)
    keys, frames = [], []
    for _url, meta, images in iter_segments(resolve_shards(str(data))):
        for (i, cam), jpeg in images.items():
            key = (meta.episode, meta.start + i, cam)
            if key not in keys:
                keys.append(key)
                pixels = torch.from_numpy(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).copy())
                frames.append((pixels.permute(2, 0, 1).float() / 255 - mean) / std)
    with torch.no_grad():
        feats = model(torch.stack(frames)).numpy()
    return dict(zip(keys, feats))


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def read_npy(out: Path) -> tuple[np.ndarray, list[dict]]:
    with open(out.with_name(out.stem + ".index.csv"), newline="") as f:
        return np.load(out), list(csv.DictReader(f))


def test_npy_rows_keys_ego_and_features(data, bundle, reference, tmp_path):
    out = tmp_path / "feats.npy"
    result = embed(bundle, str(data), out, batch_size=5)  # batches that do not divide the frame count
    array, index = read_npy(out)
    assert result.rows == len(index) == EPISODES * LENGTH * len(CAMERAS) == len(reference)
    assert array.shape == (result.rows, result.dim) and array.dtype == np.float32 and result.dim == 96
    keys = [(r["episode"], int(r["timestep"]), r["camera"]) for r in index]
    assert len(set(keys)) == len(keys) and set(keys) == set(reference)
    assert [int(r["row"]) for r in index] == list(range(result.rows))
    for row, key in zip(array, keys):
        assert np.abs(row - reference[key]).max() < 1e-4
    for r in index:
        ep, t = int(r["episode"][2:]), int(r["timestep"])
        assert float(r["ego_speed"]) == pytest.approx(ego_tracks(ep, LENGTH, 10.0)["speed"][t], rel=1e-6)
        assert int(r["frame"]) == t and float(r["timestamp"]) == pytest.approx(t / 10.0)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["rows"] == result.rows and meta["pool"] == "gap" and meta["weights_sha256"]
    assert result.ego_fields == ["speed", "yaw_rate"] and result.cameras == list(CAMERAS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.index.csv", "feats.json", "feats.npy"]


@needs_pyarrow
def test_parquet_matches_npy_and_reference(data, bundle, reference, tmp_path):
    import pyarrow.parquet as pq

    result = ssltk.embed(bundle, data=str(data), out=tmp_path / "feats.parquet", batch_size=7)
    table = pq.read_table(result.out)
    assert table.num_rows == result.rows == len(reference)
    assert table.column_names == ["episode", "timestep", "camera", "frame", "timestamp", "ego_speed",
                                  "ego_yaw_rate", "embedding"]
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    keys = list(zip(table.column("episode").to_pylist(), table.column("timestep").to_pylist(),
                    table.column("camera").to_pylist()))
    for row, key in zip(emb, keys):
        assert np.abs(row - reference[key]).max() < 1e-4
    meta = json.loads(table.schema.metadata[b"ssltk.embed"])
    assert meta["pool"] == "gap" and meta["preprocess"]["input_size"][-2:] == [SIZE, SIZE]


def test_camera_filter_and_grid_pool(data, bundle, reference, tmp_path):
    result = embed(bundle, str(data), tmp_path / "front.npy", cameras=["front"], pool="grid")
    array, index = read_npy(result.out)
    assert {r["camera"] for r in index} == {"front"} and result.rows == EPISODES * LENGTH
    assert result.pool == "grid" and array.shape[1] == 4 * 96  # the last map pooled to 2x2 cells


def test_cli_embed_json_and_table(app, data, bundle, tmp_path):
    out = tmp_path / "f.npy"
    result = runner.invoke(app, ["embed", str(bundle), "--data", str(data), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == EPISODES * LENGTH * len(CAMERAS) and summary["dim"] == 96
    result = runner.invoke(app, ["embed", str(bundle), "--data", str(data), "--out", str(out), "--overwrite",
                                 "--camera", "left"])
    assert result.exit_code == 0, result.output
    assert "embeddings written" in result.output and "left" in result.output
    assert np.load(out).shape == (EPISODES * LENGTH, 96)


def test_errors_are_one_line_and_write_nothing(app, data, bundle, tmp_path, monkeypatch):
    (tmp_path / "taken.npy").write_bytes(b"x")
    base = ["embed", str(bundle), "--data", str(data)]
    cases = [
        (["--out", str(tmp_path / "f.csv")], ".parquet"),
        (["--out", str(tmp_path / "taken.npy")], "--overwrite"),
        (["--out", str(tmp_path / "no" / "f.npy")], "no folder"),
        (["--out", str(tmp_path / "f.npy"), "--pool", "cls"], "gap"),
        (["--out", str(tmp_path / "f.npy"), "--camera", "rear"], "front"),
        (["--out", str(tmp_path / "f.npy"), "--batch-size", "0"], ">= 1"),
    ]
    for args, expect in cases:
        assert expect in one_line_error(runner.invoke(app, [*base, *args])), args
    line = one_line_error(runner.invoke(app, ["embed", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "f.npy")]))
    assert str(tmp_path) in line
    line = one_line_error(runner.invoke(app, ["embed", str(bundle), "--data", str(tmp_path / "none"), "--out",
                                              str(tmp_path / "f.npy")]))
    assert "none" in line
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if the extra were not installed
    line = one_line_error(runner.invoke(app, [*base, "--out", str(tmp_path / "f.parquet")]))
    assert "pip install 'ssltk[parquet]'" in line  # brackets kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.npy"]
    with pytest.raises(UnknownNameError):
        embed(bundle, str(data), tmp_path / "f.npy", pool="cls")
    with pytest.raises(UsageError):
        embed(bundle, str(data), tmp_path / "f.txt")


def test_a_failure_mid_way_leaves_nothing(data, bundle, tmp_path):
    def boom(rows: int) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        embed(bundle, str(data), tmp_path / "f.npy", batch_size=4, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_cli_progress_lines_without_a_terminal(app, data, bundle, tmp_path):
    result = runner.invoke(app, ["embed", str(bundle), "--data", str(data), "--out", str(tmp_path / "f.npy"),
                                 "--batch-size", "1"])  # 48 batches: a line every 20
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if "embed:" in ln]
    assert [ln.split("embed: ")[1] for ln in lines] == ["20 frames encoded", "40 frames encoded"], result.stderr
