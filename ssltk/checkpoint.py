"""Resumable training state (``DIR/train_state/``), kept apart from deployable weights.

``save_train_state`` stores what continuing a run needs: the step, every
module's ``state_dict``, the optimizer and scheduler states, the RNG states
(Python ``random``, NumPy, torch CPU and CUDA) and a small JSON ``extra``.
Everything is written with ``torch.save`` as plain tensors and containers, so
it loads with ``torch.load(weights_only=True)``: no pickled code.

Atomicity: the new state is written to ``train_state.tmp-<pid>/`` (``state.json``
last, with a sha256 per file), then swapped in with two renames
(``train_state`` -> ``train_state.old-<pid>``, tmp -> ``train_state``). A crash
before the swap leaves the previous state in place; a crash between the two
renames leaves it under ``train_state.old-<pid>``, which
:func:`find_train_state` falls back to. A ``train_state.tmp-*`` left by a crash
mid-write is removed by the next save (and by ``pretrain`` when it starts).

Loading checks each file's sha256 against ``state.json`` and loads it with
``weights_only=True``; a file that holds anything but plain tensors and
containers (a pickle payload) is refused with one line, never run.
:func:`train_state_digest` is what a bundle records so that ``ssltk bundle
verify`` can tell a train state that was changed after the bundle was written.

Layout::

    train_state/
      modules.pt     {module name: state_dict}
      optimizer.pt   optimizer.state_dict()          (if an optimizer was given)
      scheduler.pt   scheduler.state_dict()          (if a scheduler was given)
      rng.pt         {"python", "numpy", "torch", "cuda"}  (if rng=True)
      state.json     {"format", "version", "step", "extra", "files": {name: sha256}}
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ssltk.fileio import sha256_file
from ssltk.errors import UsageError, one_line

__all__ = [
    "TRAIN_STATE_DIR",
    "TRAIN_STATE_FORMAT",
    "TRAIN_STATE_VERSION",
    "find_train_state",
    "get_rng_state",
    "load_train_state",
    "read_train_state_info",
    "save_train_state",
    "set_rng_state",
    "train_state_digest",
    "verify_train_state",
]

TRAIN_STATE_DIR = "train_state"
TRAIN_STATE_FORMAT = "ssltk-train-state"
TRAIN_STATE_VERSION = 1
_INFO = "state.json"


# -- RNG ------------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (if available) CUDA RNG states as tensors and plain values."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` captured (CUDA only when present in both)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


# -- files ------------------------------------------------------------------------
def _write(path: Path, obj: Any) -> None:
    """``torch.save`` then fsync, so the data is on disk before the directory swap."""
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: Path, obj: Any) -> None:
    with open(path, "w") as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def save_train_state(
    directory: str | Path,
    *,
    step: int,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng: bool = True,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the resumable state of a run to ``directory`` (e.g. ``OUT/train_state``) atomically.

    ``modules``: name -> module (e.g. ``{"backbone": ..., "heads": ...}``);
    ``scheduler``: anything with ``state_dict()`` (timm's ``CosineLRScheduler``);
    ``extra``: JSON-serialisable (config, metrics, data position...). Returns ``directory``.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        extra_json = json.loads(json.dumps(extra or {}, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"train-state extra must be JSON-serialisable: {exc}") from None
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    for stale in final.parent.glob(f"{final.name}.tmp-*"):  # ours from a failed save, or a crashed run's
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        payload: dict[str, Any] = {"modules.pt": {name: _state_dict_cpu(m) for name, m in modules.items()}}
        if optimizer is not None:
            payload["optimizer.pt"] = optimizer.state_dict()
        if scheduler is not None:
            payload["scheduler.pt"] = scheduler.state_dict()
        if rng:
            payload["rng.pt"] = get_rng_state()
        for name, obj in payload.items():
            _write(tmp / name, obj)
        info = {
            "format": TRAIN_STATE_FORMAT,
            "version": TRAIN_STATE_VERSION,
            "step": int(step),
            "modules": sorted(modules),
            "extra": extra_json,
            "files": {name: sha256_file(tmp / name) for name in payload},
        }
        _write_json(tmp / _INFO, info)  # last: a folder without state.json is incomplete
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, final)
    return final


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` with renames; the old state survives until the new one is in place."""
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    for stale in final.parent.glob(f"{final.name}.old-*"):  # left by an earlier crash
        shutil.rmtree(stale, ignore_errors=True)


def _complete(path: Path) -> bool:
    try:
        info = json.loads((path / _INFO).read_text())
    except (OSError, ValueError):
        return False
    return info.get("format") == TRAIN_STATE_FORMAT and all((path / f).is_file() for f in info.get("files", {}))


def find_train_state(directory: str | Path) -> Path | None:
    """The usable state folder: ``directory`` itself, or ``directory.old-*`` left by a crash mid-swap."""
    path = Path(directory)
    if _complete(path):
        return path
    leftovers = sorted(path.parent.glob(f"{path.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    return next((p for p in leftovers if _complete(p)), None)


def read_train_state_info(directory: str | Path) -> dict[str, Any]:
    """The ``state.json`` of the usable state under ``directory`` (UsageError if there is none)."""
    path = find_train_state(directory)
    if path is None:
        raise UsageError(f"no complete training state in {directory} (missing or unfinished {_INFO})")
    info = json.loads((path / _INFO).read_text())
    if int(info.get("version", 0)) > TRAIN_STATE_VERSION:
        raise UsageError(
            f"training state version {info['version']} in {path} is newer than this ssltk reads "
            f"({TRAIN_STATE_VERSION}); upgrade ssltk"
        )
    info["path"] = str(path)
    return info


def _load(path: Path, name: str, info: dict[str, Any], map_location: Any) -> Any:
    file = path / name
    if name not in info["files"]:
        raise UsageError(f"training state {path} has no {name} (it was saved without it)")
    if not file.is_file():
        raise UsageError(f"training state {path} lacks {name}; it is incomplete")
    if sha256_file(file) != info["files"][name]:
        raise UsageError(f"training state file {file} is corrupt (sha256 mismatch); it cannot be resumed")
    try:
        return torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refuses pickled code; the payload never runs
        raise UsageError(
            f"training state file {file} holds more than plain tensors ({one_line(exc)[:160]}); "
            f"refused without running it: it was not written by ssltk"
        ) from None


def load_train_state(
    directory: str | Path,
    *,
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng: bool = True,
    map_location: Any = "cpu",
) -> tuple[int, dict[str, Any]]:
    """Restore modules, optimizer, scheduler and RNG saved by :func:`save_train_state`.

    Module names and parameter keys must match exactly. Returns ``(step, extra)``.
    """
    info = read_train_state_info(directory)
    path = Path(info["path"])
    saved = _load(path, "modules.pt", info, map_location)
    if set(saved) != set(modules):
        raise UsageError(
            f"training state {path} holds modules {sorted(saved)}, but this run has {sorted(modules)}"
        )
    for name, module in modules.items():
        result = module.load_state_dict(saved[name], strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise UsageError(
                f"training state {path}: module {name!r} does not match "
                f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys, "
                f"e.g. {(result.missing_keys or result.unexpected_keys)[0]!r})"
            )
    if optimizer is not None:
        optimizer.load_state_dict(_load(path, "optimizer.pt", info, map_location))
    if scheduler is not None:
        scheduler.load_state_dict(_load(path, "scheduler.pt", info, map_location))
    if rng and "rng.pt" in info["files"]:
        set_rng_state(_load(path, "rng.pt", info, "cpu"))
    return int(info["step"]), info.get("extra", {})


def train_state_digest(directory: str | Path) -> dict[str, Any] | None:
    """``{"step", "state_json": sha256, "files": {name: sha256}}`` of the usable state, or None if there is none."""
    path = find_train_state(directory)
    if path is None:
        return None
    info = json.loads((path / _INFO).read_text())
    return {"step": int(info.get("step", 0)), "state_json": sha256_file(path / _INFO),
            "files": dict(info.get("files", {}))}  # fmt: skip


def verify_train_state(directory: str | Path, recorded: dict[str, Any] | None) -> list[str]:
    """Problems with the train state under ``directory``: files that differ from ``state.json`` or from ``recorded``.

    ``recorded`` is what :func:`train_state_digest` returned when the bundle was written
    (None: the bundle recorded nothing, so only the state's own hashes are checked).
    """
    path = find_train_state(directory)
    if path is None:
        return [f"{directory}: no complete training state (missing or unfinished {_INFO})"]
    problems = []
    try:
        info = json.loads((path / _INFO).read_text())
        files = dict(info["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"{path / _INFO}: unreadable ({one_line(exc)})"]
    if recorded is not None and sha256_file(path / _INFO) != recorded.get("state_json"):
        problems.append(f"{path / _INFO}: sha256 differs from the one the bundle recorded (changed after the bundle was written)")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            problems.append(f"{file}: missing")
        elif sha256_file(file) != digest or (recorded is not None and recorded.get("files", {}).get(name) != digest):
            problems.append(f"{file}: sha256 mismatch")
    return problems
