"""The bundle's layout: file names, format version, manifest keys, extra-file names."""

from __future__ import annotations

from pathlib import Path

from ssltk.checkpoint import TRAIN_STATE_DIR
from ssltk.errors import UsageError

BUNDLE_FORMAT = "ssltk-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "ssltk.json"
WEIGHTS, CONFIG, HEADS = "model.safetensors", "config.json", "heads.safetensors"
REQUIRED_FILES = (WEIGHTS, CONFIG, HEADS)
# Keys write_bundle fills itself; values the caller passes for them are replaced.
WRITER_KEYS = ("format", "format_version", "created", "versions", "backbone", "input", "heads", "files", "train_state")
INT_KEYS = ("seed", "steps", "world_size", "global_batch")
DICT_KEYS = ("views", "data", "final_metrics", "config", "plugins", "plugin_metadata")


def check_extra_name(name: str) -> str:
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts or name.startswith("."):
        raise UsageError(f"bundle extra file name {name!r} must be a relative path inside the bundle")
    if parts[0] in (MANIFEST_NAME, TRAIN_STATE_DIR, *REQUIRED_FILES):
        raise UsageError(f"bundle extra file name {name!r} is reserved")
    return Path(*parts).as_posix()


def is_extra_name(name: str) -> bool:
    try:
        check_extra_name(name)
        return True
    except UsageError:
        return False
