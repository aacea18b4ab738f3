"""The deployable bundle: a run's output folder (``docs/bundle_format.md``), format version 1.

::

    OUT/
      model.safetensors   backbone weights, timm-native keys
      config.json         timm config: timm.create_model("local-dir:OUT", pretrained=True) works without ssltk
      heads.safetensors   projection heads, keys "<objective>.<param>"
      ssltk.json          manifest (written last: a folder without a valid one is incomplete)
      train_state/        resumable state (ssltk.checkpoint); its hashes are recorded under "train_state"

Every file is written under a temporary name and moved into place with
``os.replace``; ``ssltk.json`` is removed first and written last, so a crash
mid-update never leaves a bundle that claims to be complete.
"""

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

from ssltk.fileio import sha256_file
from ssltk.checkpoint import TRAIN_STATE_DIR, find_train_state, read_train_state_info, train_state_digest, verify_train_state
from ssltk.errors import SsltkError, UsageError, one_line
from ssltk.timm_config import complete_timm_config, head_config  # noqa: F401 - head_config re-exported

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "MANIFEST_NAME",
    "check_out_dir",
    "collect_plugin_metadata",
    "describe_data",
    "inspect_bundle",
    "is_bundle",
    "load_backbone",
    "plugin_versions",
    "read_manifest",
    "validate_manifest",
    "verify_bundle",
    "write_bundle",
]

BUNDLE_FORMAT = "ssltk-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "ssltk.json"
WEIGHTS, CONFIG, HEADS = "model.safetensors", "config.json", "heads.safetensors"
REQUIRED_FILES = (WEIGHTS, CONFIG, HEADS)
# Keys write_bundle fills itself; values the caller passes for them are replaced.
WRITER_KEYS = ("format", "format_version", "created", "versions", "backbone", "input", "heads", "files", "train_state")
_INT_KEYS = ("seed", "steps", "world_size", "global_batch")
_DICT_KEYS = ("views", "data", "final_metrics", "config", "plugins", "plugin_metadata")


# -- small helpers ------------------------------------------------------------------
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

    from ssltk import __version__

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


# -- writing ----------------------------------------------------------------------
def check_out_dir(out: str | Path, overwrite: bool) -> Path:
    """Refuse to write over an existing bundle unless ``overwrite``; return ``out`` as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another --out")
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise UsageError(f"{out} already holds a bundle; pass --overwrite or choose another --out")
    return out


def _check_extra_name(name: str) -> str:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or name.startswith("."):
        raise UsageError(f"bundle extra file name {name!r} must be a relative path inside the bundle")
    if parts[0] in (MANIFEST_NAME, TRAIN_STATE_DIR, *REQUIRED_FILES):
        raise UsageError(f"bundle extra file name {name!r} is reserved")
    return Path(*parts).as_posix()


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
    extras = {_check_extra_name(k): v for k, v in (extra_files or {}).items()}
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
        if _is_extra_name(name):
            (out / name).unlink(missing_ok=True)
    tmp = out / f"{MANIFEST_NAME}.tmp-{os.getpid()}"
    _write_bytes(tmp, (json.dumps(manifest, indent=2) + "\n").encode())
    os.replace(tmp, out / MANIFEST_NAME)


def _is_extra_name(name: str) -> bool:
    try:
        _check_extra_name(name)
        return True
    except UsageError:
        return False


# -- reading -----------------------------------------------------------------------
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
    for key in _INT_KEYS:
        if key in m and m[key] is not None and (not isinstance(m[key], int) or isinstance(m[key], bool)):
            problems.append(f"{key} must be an integer")
    for key in _DICT_KEYS:
        if key in m and m[key] is not None and not isinstance(m[key], dict):
            problems.append(f"{key} must be an object")
    if "objectives" in m and not (
        isinstance(m["objectives"], list) and all(isinstance(o, dict) and "name" in o for o in m["objectives"])
    ):
        problems.append("objectives must be a list of {name, weight, options}")
    return problems


# -- checking and loading ------------------------------------------------------------
def _check_files(path: Path, files: dict[str, Any]) -> list[str]:
    problems = []
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
        elif isinstance(entry, dict) and entry.get("sha256") != sha256_file(file):
            problems.append(f"{name}: sha256 does not match the manifest (file changed or corrupt)")
    return problems


def _timm_model(path: Path, pretrained: bool) -> nn.Module:
    import timm

    return timm.create_model(f"local-dir:{path.resolve()}", pretrained=pretrained)


def _check_backbone_weights(path: Path, manifest: dict[str, Any]) -> list[str]:
    """Build the architecture from the bundle's config and load model.safetensors into it."""
    from safetensors.torch import load_file

    bb = manifest["backbone"]
    if bb["family"] != "timm":
        try:
            _registry_backbone(path, manifest)
            return []
        except SsltkError as exc:
            return [f"backbone weights do not load: {exc}"]
    try:
        config = json.loads((path / CONFIG).read_text())
        if config.get("architecture") != bb["name"]:
            return [f"config.json architecture {config.get('architecture')!r} differs from the manifest's {bb['name']!r}"]
        model = _timm_model(path, pretrained=False)
        result = model.load_state_dict(load_file(str(path / WEIGHTS)), strict=False)
    except Exception as exc:  # corrupt file, shape mismatch, unknown architecture...
        return [f"backbone weights do not load into {bb['name']}: {one_line(exc)}"]
    if result.missing_keys or result.unexpected_keys:
        example = (result.missing_keys or result.unexpected_keys)[0]
        return [
            f"backbone weights do not fit {bb['name']}: {len(result.missing_keys)} missing, "
            f"{len(result.unexpected_keys)} unexpected keys (e.g. {example!r})"
        ]
    return []


def _check_heads(path: Path, manifest: dict[str, Any]) -> list[str]:
    from safetensors.torch import load_file

    try:
        keys = list(load_file(str(path / HEADS)))
    except Exception as exc:
        return [f"heads.safetensors does not load: {one_line(exc)}"]
    heads = manifest.get("heads", {})
    counts = dict.fromkeys(heads, 0)
    for key in keys:
        owner = max((h for h in heads if key.startswith(h + ".")), key=len, default=None)
        if owner is None:
            return [f"heads.safetensors key {key!r} belongs to no head listed in the manifest"]
        counts[owner] += 1
    return [
        f"head {name!r}: {counts[name]} tensors, manifest says {info.get('tensors')}"
        for name, info in heads.items()
        if isinstance(info, dict) and info.get("tensors") is not None and counts[name] != info["tensors"]
    ]


def verify_bundle(path: str | Path) -> list[str]:
    """Problems with the bundle at ``path`` (empty list = ok).

    Checks the manifest's structure, that every listed file exists with its
    sha256, that the weights load into their architecture with no missing
    or unexpected keys, and that ``train_state/`` matches the hashes recorded
    for it (its own ``state.json`` only, when the bundle recorded none).
    Raises UsageError if ``path`` is not a bundle at all.
    """
    path = Path(path)
    manifest = read_manifest(path)
    problems = validate_manifest(manifest)
    if problems:
        return problems
    problems = _check_files(path, manifest["files"])
    if (path / WEIGHTS).is_file() and (path / CONFIG).is_file():
        problems += _check_backbone_weights(path, manifest)
    if (path / HEADS).is_file():
        problems += _check_heads(path, manifest)
    if find_train_state(path / TRAIN_STATE_DIR) is not None or manifest.get("train_state"):
        problems += verify_train_state(path / TRAIN_STATE_DIR, manifest.get("train_state"))
    return problems


def _registry_backbone(path: Path, manifest: dict[str, Any]) -> nn.Module:
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
    folder that ssltk started writing but never finished does not.
    """
    path = Path(path)
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
        model = _registry_backbone(path, manifest)
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
        return _timm_model(path, pretrained=True)
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
