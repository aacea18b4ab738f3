"""Writing a bundle: weights and config (by the backbone), heads, extras, then the manifest last."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Iterable

from torch import nn

from ssltk._version import __version__
from ssltk.bundle.layout import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    CONFIG,
    HEADS,
    MANIFEST_NAME,
    WRITER_KEYS,
    check_extra_name,
    is_extra_name,
)
from ssltk.checkpoint import TRAIN_STATE_DIR, train_state_digest
from ssltk.errors import UsageError
from ssltk.fileio import sha256_file
from ssltk.timm_config import complete_timm_config


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def runtime_versions() -> dict[str, str]:
    """Versions of ssltk, torch, timm, safetensors and Python (for the manifest)."""
    import safetensors
    import timm
    import torch

    return {
        "ssltk": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def plugin_versions(pm: Any) -> dict[str, dict[str, str]]:
    """``{plugin name: {"dist", "version"}}`` for every working plugin of plugin manager ``pm``."""
    return {name: {"dist": i.dist, "version": i.version} for name, i in sorted(pm.infos.items()) if not i.broken}


def collect_plugin_metadata(pm: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """``{plugin name: metadata}`` from every ``bundle_metadata`` hook; a plugin that raises
    or returns something that is not JSON is marked broken and left out."""
    from ssltk.plugins import call_each

    out: dict[str, Any] = {}

    def each(call: Any, info: Any) -> None:
        result = call(manifest=dict(manifest))
        if result is not None:
            out[info.name] = json.loads(json.dumps(result, allow_nan=False))

    call_each(pm, "bundle_metadata", each)
    return out


def describe_data(spec: str | Path | Iterable[str]) -> dict[str, Any]:
    """Shard list and checksum of a data spec, for the manifest's ``data`` key.

    The checksum is the sha256 of ``"<shard name> <shard sha256>\\n"`` lines in
    shard order. Shard hashes come from the shard folders' ``manifest.json``
    when every shard is listed there (``checksum_source: "manifest"``), else
    from hashing the files (``"files"``); remote URLs give no checksum.
    """
    from ssltk.data.shards.format import read_manifest as read_shard_manifest
    from ssltk.data.shards.format import resolve_shards

    shards = resolve_shards(spec)
    known: dict[str, str] = {}
    segments = 0
    for folder in sorted({str(Path(s).parent) for s in shards}):
        try:
            man = read_shard_manifest(folder) or {}
        except (OSError, ValueError):
            man = {}
        for entry in man.get("shards", []):
            if entry.get("sha256"):
                known[str(Path(folder) / entry["name"])] = entry["sha256"]
                segments += int(entry.get("segments", 0))
    source = "manifest" if all(s in known for s in shards) else "files"
    if source == "files" and any("://" in s or s.startswith("pipe:") for s in shards):
        checksum, source, segments = None, "unavailable", None
    else:
        if source == "files":
            known, segments = {s: sha256_file(s) for s in shards}, None
        lines = "".join(f"{Path(s).name} {known[s]}\n" for s in shards)
        checksum = "sha256:" + hashlib.sha256(lines.encode()).hexdigest()
    spec_text = str(spec) if isinstance(spec, (str, Path)) else [str(s) for s in spec]
    return {
        "spec": spec_text,
        "shards": list(shards),
        "num_shards": len(shards),
        "segments": segments,
        "checksum": checksum,
        "checksum_source": source,
    }


def check_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to write over an existing bundle unless ``overwrite``; return ``out`` as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another --out")
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise UsageError(f"{out} already holds a bundle; pass --overwrite or choose another --out")
    return out


def _save_heads(path: Path, heads: dict[str, nn.Module]) -> dict[str, dict[str, int]]:
    from safetensors.torch import save_file

    state, summary = {}, {}
    for name, head in heads.items():
        if not name or name.startswith("."):
            raise UsageError(f"head name {name!r} is not a valid objective name")
        sd = head.state_dict()
        for key, value in sd.items():
            state[f"{name}.{key}"] = value.detach().cpu().contiguous().clone()
        summary[name] = {"tensors": len(sd), "parameters": sum(p.numel() for p in head.parameters())}
    save_file(state, str(path), metadata={"format": "pt", "heads": json.dumps(sorted(heads))})
    return summary


def _backbone_info(backbone: Any) -> dict[str, Any]:
    return {
        "family": backbone.family,
        "name": backbone.model_name,
        "kwargs": dict(backbone.model_kwargs),
        "num_features": int(backbone.num_features),
        "parameters": sum(p.numel() for p in backbone.parameters()),
    }


def _input_info(backbone: Any) -> dict[str, Any]:
    cfg = backbone.data_config
    return {
        "input_size": [int(v) for v in cfg["input_size"]],
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "interpolation": str(cfg.get("interpolation", "bilinear")),
    }


def write_bundle(
    out_dir: str | Path,
    *,
    backbone: Any,
    heads: dict[str, nn.Module],
    manifest: dict[str, Any],
    extra_files: dict[str, Path | bytes] | None = None,
    pm: Any = None,
) -> Path:
    """Write (or update) the bundle in ``out_dir``; return ``out_dir``.

    ``backbone`` is an :class:`ssltk.Backbone` (it writes its own weights and
    config); ``heads`` maps objective name -> head module; ``manifest`` holds the
    run's description (objectives, views, data, seed, steps, world_size,
    global_batch, metrics, config, plugins, ...); the writer adds format,
    versions, backbone, input, heads and file hashes. ``extra_files`` maps a
    relative name to a file to copy or bytes to write. ``train_state/`` is left alone.
    With a plugin manager ``pm``, ``plugins`` defaults to :func:`plugin_versions`
    and each plugin's ``bundle_metadata`` hook result goes under ``plugin_metadata``.
    """
    out = Path(out_dir)
    extras = {check_extra_name(k): v for k, v in (extra_files or {}).items()}
    if pm is not None:
        meta = collect_plugin_metadata(pm, manifest)  # first: a plugin that fails here is left out below
        manifest = {"plugins": plugin_versions(pm), **manifest}
        if meta:
            manifest["plugin_metadata"] = {**meta, **manifest.get("plugin_metadata", {})}
    try:
        body = json.loads(json.dumps({k: v for k, v in manifest.items() if k not in WRITER_KEYS}, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"bundle manifest must be JSON-serialisable: {exc}") from None
    out.mkdir(parents=True, exist_ok=True)
    stage = out / f".ssltk-write-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        extra_config = {"ssltk": {"format": BUNDLE_FORMAT, "format_version": BUNDLE_FORMAT_VERSION, "manifest": MANIFEST_NAME}}
        names = list(backbone.save_pretrained(stage, extra_config))
        if CONFIG in names:
            complete_timm_config(stage / CONFIG, backbone)
        head_summary = _save_heads(stage / HEADS, heads)
        names.append(HEADS)
        for name, src in extras.items():
            data = src if isinstance(src, (bytes, bytearray)) else Path(src).read_bytes()
            _write_bytes(stage / name, bytes(data))
            names.append(name)
        files = {}
        for name in names:
            _fsync(stage / name)
            files[name] = {"sha256": sha256_file(stage / name), "bytes": (stage / name).stat().st_size}
        full = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": runtime_versions(),
            "backbone": _backbone_info(backbone),
            "input": _input_info(backbone),
            "heads": head_summary,
            **body,
            "files": files,
        }
        digest = train_state_digest(out / TRAIN_STATE_DIR)  # lets `bundle verify` check the state too
        if digest is not None:
            full["train_state"] = digest
        _move_into_place(stage, out, names, full)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


def _move_into_place(stage: Path, out: Path, names: list[str], manifest: dict[str, Any]) -> None:
    """Invalidate the old manifest, move files in, drop files only the old bundle listed, write the manifest."""
    old_files: list[str] = []
    old_manifest = out / MANIFEST_NAME
    if old_manifest.exists():
        try:
            old_files = list(json.loads(old_manifest.read_text()).get("files", {}))
        except (OSError, ValueError):
            pass
        old_manifest.unlink()
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / name, out / name)
    for name in sorted(set(old_files) - set(names)):  # extras of the previous write
        if is_extra_name(name):
            (out / name).unlink(missing_ok=True)
    tmp = out / f"{MANIFEST_NAME}.tmp-{os.getpid()}"
    _write_bytes(tmp, (json.dumps(manifest, indent=2) + "\n").encode())
    os.replace(tmp, out / MANIFEST_NAME)
