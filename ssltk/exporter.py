"""``export``: a bundle's backbone as ONNX or TorchScript, for runtimes without ssltk or timm.

The exported graph maps float32 images ``[N, C, H, W]`` (input ``pixel_values``, already
normalised with the bundle's mean and std) to pooled features ``[N, D]`` (output
``features``); the batch axis is dynamic. The preprocessing is written beside the file
(``model.onnx.preprocess.json`` / ``model.torchscript.preprocess.json``, the format kept in
the name: input size, mean, std, interpolation, the features' width and the bundle's weights
sha256), so a deployment can feed it exactly as training did.

With ``check`` (the default) the export is run on a random batch of 3 and compared with the
torch model: onnxruntime for ONNX (``pip install 'ssltk[export]'``), ``torch.jit.load`` for
TorchScript; the largest absolute difference is returned and a difference above ``1e-4``
is an error (nothing is left behind).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssltk.errors import SsltkError, UnknownNameError, UsageError

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
INPUT_NAME, OUTPUT_NAME = "pixel_values", "features"
TOLERANCE = 1e-4


class ExportMismatch(SsltkError):
    """The exported model does not reproduce the torch model's features."""

    exit_code = 1


@dataclass
class ExportResult:
    out: Path
    format: str
    input_name: str
    output_name: str
    input_size: list[int]
    num_features: int
    preprocess_file: Path
    max_abs_diff: float | None

    def as_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def preprocess_path(out: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.preprocess.json``, ``model.torchscript.pt`` -> ``model.torchscript.preprocess.json``.

    The format stays in the name, so the ONNX and TorchScript exports of one bundle can sit side by side.
    """
    name = out.name[:-3] if out.name.endswith(".pt") and len(out.name) > 3 else out.name
    return out.with_name(name + ".preprocess.json")


def _export_onnx(model, example, out: Path, opset: int) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UsageError("--format onnx needs onnx: pip install 'ssltk[export]'") from None
    kwargs: dict[str, Any] = {}
    try:
        import onnxscript  # noqa: F401  - the dynamo exporter needs it

        batch = torch.export.Dim("batch", min=1)
        kwargs = {"dynamo": True, "dynamic_shapes": {"x": {0: batch}}}
    except ImportError:
        kwargs = {"dynamo": False, "dynamic_axes": {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}}
    torch.onnx.export(model, (example,), str(out), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                      opset_version=opset, external_data=False, verbose=False, **kwargs)


def _run_onnx(out: Path, x) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("checking an ONNX export needs onnxruntime: pip install 'ssltk[export]' (or pass --no-check)") from None
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]


class _Features(torch.nn.Module):
    """The backbone with one tensor in and one out (what the exporters and runtimes expect)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x)
        return y[0] if isinstance(y, (tuple, list)) else y


def export(
    bundle: str | Path,
    *,
    format: str = "onnx",
    out: str | Path | None = None,
    opset: int = 18,
    check: bool = True,
    overwrite: bool = False,
) -> ExportResult:
    """Export the backbone of ``bundle``; return where it went and the parity check's max abs diff."""
    from ssltk.bundle import load_backbone
    from ssltk.fileio import sha256_file

    if format not in FORMATS:
        raise UnknownNameError("--format", format, FORMATS)
    bundle = Path(bundle)
    out = Path(out) if out is not None else bundle / f"model{SUFFIX[format]}"
    side = preprocess_path(out)
    for f in (out, side):
        if f.exists() and not overwrite:
            raise UsageError(f"{f} exists; pass --overwrite or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: no folder {out.parent}")
    model, pre = load_backbone(bundle, "cpu")
    model = _Features(model.float()).eval()
    c, h, w = (int(v) for v in pre["input_size"])
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(2, c, h, w, generator=gen)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with torch.no_grad():
            if format == "onnx":
                _export_onnx(model, example, tmp, opset)
            else:
                traced = torch.jit.trace(model, example)
                torch.jit.save(traced, str(tmp))
            diff = None
            if check:
                x = torch.randn(3, c, h, w, generator=gen)  # another batch size: the batch axis is dynamic
                want = model(x).numpy()
                got = _run_onnx(tmp, x) if format == "onnx" else torch.jit.load(str(tmp))(x).numpy()
                if got.shape != want.shape:
                    raise ExportMismatch(f"the {format} export gives features of shape {list(got.shape)}, torch {list(want.shape)}")
                diff = float(abs(got - want).max())
                if not diff <= TOLERANCE:
                    raise ExportMismatch(f"the {format} export differs from the torch model by {diff:.2e} "
                                         f"(more than {TOLERANCE:g}); nothing written")
            num_features = int(model(example[:1]).shape[-1])
        weights = bundle / "model.safetensors"
        info = {
            "format": format, "file": out.name, "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_size": [c, h, w], "mean": pre["mean"], "std": pre["std"], "interpolation": pre["interpolation"],
            "scale": "pixels in [0, 1], then (x - mean) / std", "num_features": num_features,
            "dynamic_axes": {INPUT_NAME: [0], OUTPUT_NAME: [0]},
            "bundle": str(bundle.resolve()), "weights_sha256": sha256_file(weights) if weights.is_file() else None,
        }  # fmt: skip
        side_tmp = side.with_name(f".{side.name}.tmp-{os.getpid()}")
        side_tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, out)
        os.replace(side_tmp, side)
    finally:
        tmp.unlink(missing_ok=True)
        side.with_name(f".{side.name}.tmp-{os.getpid()}").unlink(missing_ok=True)
    return ExportResult(out, format, INPUT_NAME, OUTPUT_NAME, [c, h, w], num_features, side, diff)
