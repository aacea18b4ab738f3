"""Checking a bundle: manifest structure, file hashes, weights that load, heads, training state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ssltk.bundle.layout import CONFIG, HEADS, WEIGHTS
from ssltk.bundle.read import read_manifest, registry_backbone, timm_model, validate_manifest
from ssltk.checkpoint import TRAIN_STATE_DIR, find_train_state, verify_train_state
from ssltk.errors import SsltkError, one_line
from ssltk.fileio import sha256_file


def _check_files(path: Path, files: dict[str, Any]) -> list[str]:
    problems = []
    for name, entry in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
        elif isinstance(entry, dict) and entry.get("sha256") != sha256_file(file):
            problems.append(f"{name}: sha256 does not match the manifest (file changed or corrupt)")
    return problems


def _check_backbone_weights(path: Path, manifest: dict[str, Any]) -> list[str]:
    """Build the architecture from the bundle's config and load model.safetensors into it."""
    from safetensors.torch import load_file

    bb = manifest["backbone"]
    if bb["family"] != "timm":
        try:
            registry_backbone(path, manifest)
            return []
        except SsltkError as exc:
            return [f"backbone weights do not load: {exc}"]
    try:
        config = json.loads((path / CONFIG).read_text())
        if config.get("architecture") != bb["name"]:
            return [f"config.json architecture {config.get('architecture')!r} differs from the manifest's {bb['name']!r}"]
        model = timm_model(path, pretrained=False)
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
