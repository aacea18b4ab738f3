"""The built-in synthetic shard sets, generated once into the user cache.

:func:`default_synthetic_shards` returns a folder of episode shards that
``ssltk pretrain`` and the probes use when no ``--data`` is given. The folder
is keyed by the generator version and every generation option, so a later
call reuses it and a new generator version (or other options) makes a new
one. Generation writes a temporary folder and renames it into place, so an
interrupted run leaves nothing that looks complete and two processes racing
for the same set both end up with one valid copy.

Cache root: ``$SSLTK_CACHE``, else ``$XDG_CACHE_HOME/ssltk``, else ``~/.cache/ssltk``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ssltk.data.shards.format import FORMAT_VERSION, MANIFEST
from ssltk.data.synth import PARALLEL, episodes
from ssltk.data.synth.params import SynthParams
from ssltk.errors import UnknownNameError, UsageError

__all__ = ["default_synthetic_shards", "cache_root", "DEFAULT_SPLITS"]

# Sized for a short CPU demo: the train set takes ~10-20 s on one core.
DEFAULT_SPLITS: dict[str, dict[str, Any]] = {
    "train": {"episodes": 24, "length": 64, "image_size": 96, "seed": 0},
    # Held-out episodes for `ssltk probe`. Many short episodes: motion targets change slowly
    # within an episode, so ridge probes learn from the number of episodes, not of frames
    # (raw-pixel R² on yaw rate: mean of 3 seeds, 32 episodes 0.21, 96: 0.47, 192: 0.60; docs/probe.md).
    # 32 steps = a 12-frame probe run + the 2 s waypoint horizon at 10 fps.
    "probe": {"episodes": 192, "length": 32, "image_size": 96, "seed": 1_000_003},
}
STAMP = "ssltk-cache.json"  # written inside a finished set, next to manifest.json
_STALE_TMP_S = 6 * 3600  # temporary folders older than this are leftovers of killed runs


def cache_root() -> Path:
    """Where ssltk keeps generated data."""
    if os.environ.get("SSLTK_CACHE"):
        return Path(os.environ["SSLTK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ssltk"


def _key(params: dict[str, Any], shard_size: int) -> str:
    blob = {"generator": episodes.GENERATOR, "version": episodes.GENERATOR_VERSION, "format": FORMAT_VERSION,
            "params": params, "shard_size": shard_size}  # fmt: skip
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _complete(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / STAMP).is_file()


def default_synthetic_shards(split: str = "train", *, shard_size: int = 16, verbose: bool = True, **overrides: Any) -> Path:
    """Folder of the default synthetic shard set for ``split`` ("train" or "probe"), generating it if needed.

    ``overrides`` change generator options (``episodes=4``, ``image_size=64``,
    ... :class:`~ssltk.data.synth.params.SynthParams`); each distinct set of
    options is cached separately.
    """
    if split not in DEFAULT_SPLITS:
        raise UnknownNameError("split", split, DEFAULT_SPLITS)
    params = SynthParams(**{**DEFAULT_SPLITS[split], **overrides})
    key = _key(params.to_dict(), shard_size)
    root = cache_root() / "synth"
    final = root / f"{split}-v{episodes.GENERATOR_VERSION}-{key}"
    if _complete(final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the cache folder {root} ({exc.strerror}); set SSLTK_CACHE to a writable folder") from None
    tmp = root / f".tmp-{split}-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    if verbose:
        sys.stderr.write(f"ssltk: generating the default synthetic '{split}' episodes into {final} (once)...\n")
    started = time.perf_counter()
    try:
        workers = max(1, min(4, os.cpu_count() or 1)) if PARALLEL["generation"] else 1  # the output does not depend on it
        manifest = episodes.synth_episodes(tmp, params=params, shard_size=shard_size, workers=workers)
        stamp = {"split": split, "key": key, "generator_version": episodes.GENERATOR_VERSION, "params": params.to_dict(),
                 "seconds": round(time.perf_counter() - started, 2), "segments": manifest["segments"]}  # fmt: skip
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(root, split, keep=final)
    return final


def _publish(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` atomically; if another process got there first, keep its copy."""
    for _ in range(3):
        try:
            os.rename(tmp, final)  # fails if final is a non-empty folder
            return
        except OSError:
            if _complete(final):
                return  # a concurrent run won the race: its copy is equivalent
            shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover
    raise UsageError(f"could not move the generated shards into {final}")


def _prune(root: Path, split: str, keep: Path) -> None:
    """Best effort: remove this split's sets from other generator versions and stale temporary folders."""
    now = time.time()
    for path in root.iterdir():
        try:
            if path.name.startswith(".tmp-") and now - path.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(f"{split}-v") and not path.name.startswith(f"{split}-v{episodes.GENERATOR_VERSION}-"):
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass
