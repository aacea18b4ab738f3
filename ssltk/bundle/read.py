"""Reading a bundle: its manifest, its backbone (the one loader ssltk has), a summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ssltk.bundle.layout import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    CONFIG,
    DICT_KEYS,
    INT_KEYS,
    MANIFEST_NAME,
    REQUIRED_FILES,
    WEIGHTS,
)
from ssltk.checkpoint import TRAIN_STATE_DIR, find_train_state, read_train_state_info
from ssltk.device import resolve_device
from ssltk.errors import SsltkError, UsageError, one_line


def is_bundle(path: str | Path) -> bool:
    """True if ``path`` is a folder with a readable ssltk bundle manifest."""
    try:
        read_manifest(path)
        return True
    except SsltkError:
        return False


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle at ``path`` (the folder or its ``ssltk.json``); UsageError if none."""
    path = Path(path)
    file = path if path.name == MANIFEST_NAME and path.is_file() else path / MANIFEST_NAME
    if not file.is_file():
        hint = ""
        if path.is_dir() and (path / WEIGHTS).exists():
            hint = " (it has model.safetensors but no ssltk.json: an unfinished write?)"
        raise UsageError(f"{path} is not an ssltk bundle: no {MANIFEST_NAME}{hint}")
    try:
        manifest = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise UsageError(f"{file} is not an ssltk bundle manifest (format should be {BUNDLE_FORMAT!r})")
    version = manifest.get("format_version")
    if isinstance(version, int) and version > BUNDLE_FORMAT_VERSION:
        raise UsageError(
            f"{path} uses bundle format {version}; this ssltk reads up to {BUNDLE_FORMAT_VERSION}: upgrade ssltk"
        )
    return manifest


def _num_list(value: Any, n: int | None = None) -> bool:
    ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    return ok and (n is None or len(value) == n)


def validate_manifest(m: dict[str, Any]) -> list[str]:
    """Problems with the manifest's structure (empty list when valid)."""
    problems = []
    if not isinstance(m.get("format_version"), int) or m["format_version"] < 1:
        problems.append("format_version must be a positive integer")
    bb = m.get("backbone")
    if not isinstance(bb, dict) or not all(isinstance(bb.get(k), str) for k in ("family", "name")):
        problems.append("backbone must name its family and model")
    elif not isinstance(bb.get("kwargs", {}), dict):
        problems.append("backbone.kwargs must be an object")
    inp = m.get("input")
    if not isinstance(inp, dict) or not _num_list(inp.get("input_size"), 3):
        problems.append("input.input_size must be [C, H, W]")
    elif not (_num_list(inp.get("mean")) and _num_list(inp.get("std"))):
        problems.append("input.mean and input.std must be lists of numbers")
    files = m.get("files")
    if not isinstance(files, dict):
        problems.append("files must map file names to {sha256, bytes}")
        files = {}
    for name in REQUIRED_FILES:
        if name not in files:
            problems.append(f"files does not list {name}")
    for name, entry in files.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
            problems.append(f"files[{name!r}] needs a 64-digit sha256")
    if not isinstance(m.get("heads", {}), dict):
        problems.append("heads must map objective names to summaries")
    for key in INT_KEYS:
        if key in m and m[key] is not None and (not isinstance(m[key], int) or isinstance(m[key], bool)):
            problems.append(f"{key} must be an integer")
    for key in DICT_KEYS:
        if key in m and m[key] is not None and not isinstance(m[key], dict):
            problems.append(f"{key} must be an object")
    if "objectives" in m and not (
        isinstance(m["objectives"], list) and all(isinstance(o, dict) and "name" in o for o in m["objectives"])
    ):
        problems.append("objectives must be a list of {name, weight, options}")
    return problems


def timm_model(path: Path, pretrained: bool) -> nn.Module:
    """``timm.create_model("local-dir:PATH", pretrained=...)``: exactly what a user without ssltk runs."""
    import timm

    return timm.create_model(f"local-dir:{path.resolve()}", pretrained=pretrained)


def registry_backbone(path: Path, manifest: dict[str, Any]) -> nn.Module:
    """A non-timm backbone: rebuilt by its registered family with ``init=<bundle>``."""
    from ssltk.registry import Registry

    bb = manifest["backbone"]
    registry = Registry()
    if bb["family"] not in registry.backbones:
        raise UsageError(f"bundle backbone family {bb['family']!r} is not installed (see `ssltk list-plugins`)")
    family = registry.backbones[bb["family"]].obj
    return family.create(bb["name"], init=str(path), **bb.get("kwargs", {}))


def load_backbone(path: str | Path, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The bundle's trained backbone (eval mode) and its preprocessing.

    Returns ``(model, preprocess)``: for timm bundles ``model`` is exactly
    ``timm.create_model("local-dir:PATH", pretrained=True)`` (pooled features,
    no classifier); ``preprocess`` is ``{"mean", "std", "input_size", "interpolation"}``.
    A plain timm ``local-dir`` folder (config.json + weights, no ssltk.json, e.g.
    from ``timm.models.save_for_hf``) also loads, with timm's data config; a
    folder that ssltk started writing but never finished does not. ``device``:
    ``"auto"``, ``"cpu"``, ``"cuda[:N]"`` or a ``torch.device`` (``ssltk.device.resolve_device``).
    """
    path, device = Path(path), resolve_device(device)
    if _is_plain_timm_folder(path):
        model = _load_timm(path)
        import timm.data

        return model.to(device).eval(), _preprocess(timm.data.resolve_model_data_config(model))
    manifest = read_manifest(path)
    problems = validate_manifest(manifest)
    if problems:
        raise UsageError(f"{path}: invalid bundle manifest: {problems[0]}")
    if manifest["backbone"]["family"] == "timm":
        model = _load_timm(path)
    else:
        model = registry_backbone(path, manifest)
    return model.to(device).eval(), _preprocess(manifest["input"])


def _is_plain_timm_folder(path: Path) -> bool:
    """A timm ``local-dir`` folder not written by ssltk (no ssltk.json and no ``ssltk`` key in config.json)."""
    if (path / MANIFEST_NAME).exists() or not (path / CONFIG).is_file():
        return False
    try:
        return "ssltk" not in json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False


def _load_timm(path: Path) -> nn.Module:
    try:
        return timm_model(path, pretrained=True)
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise UsageError(
            f"bundle {path}: backbone does not load ({one_line(exc)}); run `ssltk bundle verify {path}`"
        ) from None


def _preprocess(inp: dict[str, Any]) -> dict[str, Any]:
    return {
        "mean": [float(v) for v in inp["mean"]],
        "std": [float(v) for v in inp["std"]],
        "input_size": [int(v) for v in inp["input_size"]],
        "interpolation": str(inp.get("interpolation") or "bilinear"),
    }


def _data_summary(data: dict[str, Any]) -> dict[str, Any] | None:
    if not data:
        return None
    summary = {k: data.get(k) for k in ("spec", "num_shards", "segments", "checksum")}
    if summary["num_shards"] is None and isinstance(data.get("shards"), list):
        summary["num_shards"] = len(data["shards"])
    return summary


def inspect_bundle(path: str | Path) -> dict[str, Any]:
    """A readable summary of the bundle at ``path`` (what ``ssltk bundle inspect --json`` prints)."""
    path = Path(path)
    m = read_manifest(path)
    data = m.get("data") or {}
    state = None
    if find_train_state(path / TRAIN_STATE_DIR) is not None:
        info = read_train_state_info(path / TRAIN_STATE_DIR)
        state = {"step": info["step"], "path": info["path"]}
    files = m.get("files") or {}
    return {
        "path": str(path),
        "format_version": m.get("format_version"),
        "created": m.get("created"),
        "backbone": m.get("backbone"),
        "input": m.get("input"),
        "heads": m.get("heads"),
        "objectives": m.get("objectives"),
        "views": m.get("views"),
        "data": _data_summary(data),
        "seed": m.get("seed"),
        "steps": m.get("steps"),
        "world_size": m.get("world_size"),
        "global_batch": m.get("global_batch"),
        "final_metrics": m.get("final_metrics"),
        "versions": m.get("versions"),
        "plugins": m.get("plugins"),
        "files": {name: (e or {}).get("bytes") for name, e in files.items()},
        "total_bytes": sum((e or {}).get("bytes") or 0 for e in files.values()),
        "train_state": state,
    }
