"""What a failed run leaves behind, and the one line that says why it failed.

``pretrain`` checks everything it can before it writes to ``--out`` (names,
the folder, data, ``--init``, the view plan, a resumed state). What can still
fail later (a plugin's objective or backbone raising, NaN losses, a full disk,
bad data under ``--strict``, Ctrl-C) is reported by :func:`run_failure` as one
line that names the culprit and says what was kept: the last checkpoint
(resumable) or nothing, in which case :func:`remove_run_files` has removed
what this run wrote. ``pretrain`` re-raises the original exception (callers
from Python keep its type) with that error attached as ``exc.ssltk_failure``,
which the CLI prints instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable

from ssltk.errors import SsltkError, UsageError, one_line

# Files and folders a run writes into --out before its bundle (removed again if it fails before a checkpoint).
RUN_FILES = ("run_config.yaml", "metrics.jsonl", "loss_curve.png", "tensorboard", "mlflow.db", "wandb", "trackers.json")
STAGING_GLOBS = ("train_state.tmp-*", ".ssltk-write-*", "ssltk.json.tmp-*")


class TrainingFailed(SsltkError):
    """A failure during training: one line naming the culprit and what was kept (exit 1)."""

    exit_code = 1


class Interrupted(SsltkError):
    """Ctrl-C during training (exit 130); says what was kept."""

    exit_code = 130


def short(value: object, n: int = 120) -> str:
    """``value`` as text, cut to ``n`` characters for a one-line message."""
    text = str(value)
    return text if len(text) <= n else f"{text[: n - 20]}...({len(text)} characters)"


def check_local_path(option: str, value: str | None) -> None:
    """UsageError for a path the OS refuses outright (a name too long, a NUL byte); a missing one is the caller's."""
    if value is None:
        return
    try:
        os.stat(value)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"{option} {short(value)}: {why}") from None


def check_writable(out: Path) -> None:
    """UsageError now (before any work) if ``out`` cannot be created or written."""
    check_local_path("--out", str(out))
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UsageError(f"--out {short(out)}: {short(probe)} is a file, not a folder; choose another --out")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {short(out)}: cannot write in {short(probe)} (read-only or no permission); "
                         f"choose another --out")


def remove_staging(out: Path) -> list[Path]:
    """Remove half-written staging folders and files a crashed run left in ``out``; return what was removed.

    Only one process writes into a run folder (rank 0), so any staging entry found before
    it starts, or while no save is in progress, is a leftover.
    """
    removed = []
    for pattern in STAGING_GLOBS:
        for path in Path(out).glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_run_files(out: Path, created_dir: bool) -> None:
    """Undo a run that failed before its first checkpoint: its files, and ``out`` itself if this run made it."""
    out = Path(out)
    if not out.exists():
        return
    remove_staging(out)
    for name in RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    if created_dir:
        try:
            out.rmdir()  # only if nothing else is there
        except OSError:
            pass


@dataclass(frozen=True)
class Suspect:
    """Plugin code a run calls: what it is (``objective 'x'``), its plugin, and the objects that run its code."""

    what: str
    plugin: Any  # ssltk.plugins.PluginInfo
    objects: tuple[Any, ...]
    modules: tuple[str, ...]

    def describe(self) -> str:
        p = self.plugin
        dist = f"{p.dist} {p.version}".strip() if getattr(p, "dist", "-") != "-" else "registered by hand"
        return f"{self.what} (plugin {p.name!r}, distribution {dist})"


def suspects_of(registry: Any, cfg: Any, model: Any = None) -> list[Suspect]:
    """The objectives and the backbone family of a run, with the objects whose frames mark their code."""
    out = []
    objectives = getattr(model, "objectives", {}) if model is not None else {}
    for spec in cfg.objectives:
        entry = registry.objective(spec.name)
        obj = objectives[spec.name] if spec.name in objectives else None
        objs = tuple(o for o in (obj, entry.obj) if o is not None)
        out.append(Suspect(f"objective {spec.name!r}", entry.plugin, objs, (entry.obj.__module__,)))
    fam, _ = registry.backbone(cfg.backbone)
    backbone = getattr(model, "backbone", None) if model is not None else None
    objs = tuple(o for o in (backbone, fam.obj) if o is not None)
    mods = tuple({type(fam.obj).__module__, *(type(o).__module__ for o in objs)})
    out.append(Suspect(f"backbone {cfg.backbone!r}", fam.plugin, objs, mods))
    return out


def _frames(tb: TracebackType | None) -> Iterable[Any]:
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    return reversed(frames)  # innermost first


def culprit(exc: BaseException, suspects: list[Suspect]) -> Suspect | None:
    """The suspect whose code raised ``exc``: the innermost frame that runs on one of its objects or in its module."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # the exception and what caused it
        seen.add(id(cur))
        for frame in _frames(cur.__traceback__):
            this = frame.f_locals.get("self")
            for s in suspects:
                if this is not None and any(this is o for o in s.objects):
                    return s
            module = frame.f_globals.get("__name__", "")
            for s in suspects:
                if module in s.modules:
                    return s
        cur = cur.__cause__ or cur.__context__
    return None


def kept_line(out: Path, checkpoint_step: int | None) -> str:
    if checkpoint_step is None:
        return f"no checkpoint had been written, so nothing was kept in {out}"
    return f"the checkpoint of step {checkpoint_step} is kept: resume with `ssltk pretrain --resume {out}`"


def run_failure(exc: BaseException, *, where: str, suspects: list[Suspect], out: Path,
                checkpoint_step: int | None) -> SsltkError:
    """The one-line error for ``exc`` raised ``where`` (``"at step 12"``), saying what was kept."""
    kept = kept_line(out, checkpoint_step)
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(f"interrupted {where}; {kept}")
    if isinstance(exc, SsltkError):
        text = str(exc).strip()
        if "--resume" in text or "checkpoint" in text:
            return exc
        err = SsltkError(f"{text}; {kept}")
        err.exit_code = exc.exit_code
        return err
    who = culprit(exc, suspects)
    if who is not None:
        return TrainingFailed(f"{who.describe()} failed {where}: {one_line(exc)}; {kept}")
    if isinstance(exc, OSError):
        what = exc.strerror or one_line(exc)
        return TrainingFailed(f"{what}{': ' + str(exc.filename) if exc.filename else ''} {where}; {kept}")
    return TrainingFailed(f"training failed {where}: {one_line(exc)}; {kept} (ssltk --debug shows the traceback)")
