"""Progress of a training run as text: the log line every ``log_every`` steps, durations, the logger.

``pretrain`` logs one line per logged step through the standard :mod:`logging` logger
``ssltk.train`` (INFO)::

    step 20/300 loss 4.1234 (temporal-infonce 4.0012, per-frame 0.2445) lr 1.20e-03 512.3 samples/s data-wait 12% eta 1m23s

The CLI shows these lines when stderr is not a terminal (CI, SLURM, ``nohup``, ``| tee``) and a
progress bar otherwise; a Python caller sees them once it configures logging
(``logging.basicConfig(level=logging.INFO)``). Nothing here imports torch.
"""

from __future__ import annotations

import logging
import math
from typing import Any

LOGGER_NAME = "ssltk.train"
logger = logging.getLogger(LOGGER_NAME)


def format_duration(seconds: float | None) -> str:
    """``83`` -> ``1m23s``; ``3725`` -> ``1h02m``; ``None`` or not finite -> ``?``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 100 * 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def objective_losses(row: dict[str, Any]) -> dict[str, float]:
    """``{objective: loss}`` of a metrics row (its ``loss/NAME`` keys)."""
    return {k[5:]: float(v) for k, v in row.items() if k.startswith("loss/")}


def log_line(row: dict[str, Any], total: int) -> str:
    """The full, never-cut text line for one metrics row (``step``, ``loss``, ``lr``, ``samples_per_s``,
    ``data_wait``, ``eta_s``; per-objective losses in brackets when objectives are composed)."""
    parts = [f"step {row['step']}/{total}", f"loss {row['loss']:.4f}"]
    per = objective_losses(row)
    if len(per) > 1:
        parts[-1] += " (" + ", ".join(f"{k} {v:.4f}" for k, v in per.items()) + ")"
    parts.append(f"lr {row['lr']:.2e}")
    parts.append(f"{row['samples_per_s']:.1f} samples/s")
    if "data_wait" in row:
        parts.append(f"data-wait {100 * row['data_wait']:.0f}%")
    parts.append(f"eta {format_duration(row.get('eta_s'))}")
    return " ".join(parts)


def eta_seconds(elapsed: float, done: int, remaining: int) -> float | None:
    """Seconds left at the mean pace of the ``done`` steps this process ran in ``elapsed`` seconds."""
    if done <= 0:
        return None
    return elapsed / done * max(0, remaining)
