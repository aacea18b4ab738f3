"""The run folder's resume policy: an interrupted run in ``--out``, the run to continue, its config.

``pretrain`` (``ssltk.train.loop``) applies it whoever calls, the CLI or ``ssltk.pretrain``:
:func:`decide_resume` says whether a run continues the folder it writes into, and
:func:`resume_config` is the config a run folder is continued with (``--resume RUN``).

A folder holds an *interrupted run* when it has ``run_config.yaml`` and a complete
``train_state/`` but no finished bundle (``ssltk.json``). Starting a run into such a folder:

* with the same config (run-time keys such as ``steps``, ``device`` or ``loggers`` may differ)
  resumes it, as ``--resume`` would;
* with another config is refused in one line naming the keys that differ and saying
  ``--resume`` (continue the saved run) or ``--overwrite`` (start again).

``--resume`` with no folder resumes ``--out`` itself when it is a run folder, else the most
recently updated run folder directly under it. A finished run (its bundle written) is resumed
only to train it longer (``--steps`` above its last step); otherwise that is refused in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import yaml

from ssltk.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ssltk.train.config import TrainConfig

RUN_CONFIG = "run_config.yaml"
MANIFEST = "ssltk.json"
STATE_DIR = "train_state"
# Keys a resumed run may change: they do not change what the model learns from which batches.
RUNTIME_KEYS = ("steps", "out", "device", "precision", "num_workers", "compile", "tensorboard", "loggers", "threads")


def saved_step(folder: str | Path) -> int | None:
    """The step of the complete training state in ``folder`` (None without one)."""
    from ssltk.checkpoint import find_train_state, read_train_state_info

    if find_train_state(Path(folder) / STATE_DIR) is None:
        return None
    try:
        return int(read_train_state_info(Path(folder) / STATE_DIR).get("step", 0))
    except (UsageError, OSError, ValueError):
        return None


def interrupted_step(folder: str | Path) -> int | None:
    """The step an interrupted run in ``folder`` stopped at; None if ``folder`` holds no interrupted run."""
    folder = Path(folder)
    if not (folder / RUN_CONFIG).is_file() or (folder / MANIFEST).exists():
        return None
    return saved_step(folder)


def read_run_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / RUN_CONFIG
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        raise UsageError(f"{path} cannot be read as YAML; pass --overwrite to start the run again") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a run config; pass --overwrite to start the run again")
    return data


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The config keys (outside :data:`RUNTIME_KEYS`) whose values differ."""
    keys = sorted((set(saved) | set(new)) - set(RUNTIME_KEYS))
    return [k for k in keys if saved.get(k) != new.get(k)]


def should_resume(out: str | Path, config: dict[str, Any], *, overwrite: bool) -> int | None:
    """The step to resume from when ``out`` holds an interrupted run of ``config``; None to start afresh.

    Raises a one-line UsageError when the interrupted run has another config (and not ``overwrite``).
    """
    if overwrite:
        return None
    step = interrupted_step(out)
    if step is None:
        return None
    diff = config_differences(read_run_config(out), config)
    if diff:
        shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise UsageError(
            f"{out} holds an interrupted run (step {step}) with another config ({shown} differ); "
            f"pass --resume {out} to continue it or --overwrite to start again"
        )
    return step


def find_last_run(out: str | Path) -> Path:
    """``--resume`` without a folder: ``out`` if it is a run folder, else its newest resumable run folder."""
    out = Path(out)
    if (out / RUN_CONFIG).is_file():
        return out
    runs = [p for p in out.iterdir() if (p / RUN_CONFIG).is_file() and saved_step(p) is not None] if out.is_dir() else []
    if not runs:
        raise UsageError(f"--resume: no run to resume in {out}; give the run folder, --resume PATH")
    return max(runs, key=lambda p: (p / STATE_DIR).stat().st_mtime)


def check_not_finished(folder: str | Path, steps: int) -> None:
    """Refuse in one line to resume a finished run without more steps (it would only rewrite its bundle)."""
    folder = Path(folder)
    if not (folder / MANIFEST).exists():
        return
    step = saved_step(folder)
    if step is not None and steps <= step:
        raise UsageError(f"--resume {folder}: that run finished at step {step}; pass --steps N with N above {step} "
                         "to train it longer, or start a new run in another --out")


def resume_config(
    run: str | Path, *, out: str | Path | None = None, runtime: dict[str, Any] | None = None, given: Iterable[str] = ()
) -> "TrainConfig":
    """The config to continue the run folder ``run`` with: its ``run_config.yaml``, ``runtime`` values on top.

    ``run`` ``""`` (``--resume`` alone): ``out`` if it is a run folder, else the newest run under it.
    ``out`` naming another folder is refused in one line, and so is any option in ``given``
    (the caller's options outside :data:`RUNTIME_KEYS`: they would change what the run learns).
    """
    from ssltk.train.config import resolve_config

    if str(run) == "":
        run, out = find_last_run(out or "runs/pretrain"), None
    run = Path(run)
    if not (run / RUN_CONFIG).is_file():
        raise UsageError(f"--resume {run}: no {RUN_CONFIG} there; is it an ssltk run folder?")
    if out is not None and Path(out).resolve() != run.resolve():
        raise UsageError(f"--resume {run} continues that folder; leave out --out {out}, or use --out to start a new run")
    if list(given):
        raise UsageError("--resume continues a run with its own config; only --steps and run-time options "
                         "(--device, --precision, --num-workers, --compile, --logger, --tensorboard) may change")
    values = {k: v for k, v in (runtime or {}).items() if k in RUNTIME_KEYS or k == "decode"}
    return resolve_config(run / RUN_CONFIG, overrides={**values, "out": str(run)})  # pretrain() saves it again


def decide_resume(
    out: Path, config: dict[str, Any], *, resume: bool | None, overwrite: bool, say: Callable[[str], Any]
) -> bool:
    """Whether the run continues the run in ``out``; every refusal is one line, before anything is written.

    ``resume`` True: continue it (a finished run only with more ``steps``). None: continue an
    interrupted run of the same ``config`` (another config is refused), else start afresh.
    False: start afresh, refusing an interrupted run unless ``overwrite``; ``say`` tells the user
    that an interrupted run is continued.
    """
    from ssltk.bundle import check_out_dir
    from ssltk.checkpoint import find_train_state

    if resume:
        check_not_finished(out, int(config.get("steps") or 0))
    else:
        check_out_dir(out, overwrite)
        found = should_resume(out, config, overwrite=overwrite)
        if found is not None and resume is False:
            raise UsageError(f"{out} holds an interrupted run (step {found}); pass --resume {out} to continue it "
                             "or --overwrite to start again")
        if found is not None:
            say(f"resuming the interrupted run in {out} from step {found}")
        resume = found is not None
    if resume and find_train_state(out / STATE_DIR) is None:
        raise UsageError(f"--resume: {out} has no complete train_state/ to resume from")
    return bool(resume)

