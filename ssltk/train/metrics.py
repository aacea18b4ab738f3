"""Run metrics: ``metrics.jsonl`` (one line per logging step, also sent to the trackers) and the loss-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "loss_curve.png"


class MetricsLog:
    """Appends metric rows to ``metrics.jsonl`` and to each tracker (:mod:`ssltk.train.trackers`);
    on resume, rows after the resumed step are dropped first."""

    def __init__(self, out: Path, *, resume_step: int | None = None, trackers: list | None = None) -> None:
        self.path = Path(out) / METRICS_FILE
        if resume_step is not None and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep))
        elif self.path.exists():
            self.path.unlink()
        self.trackers = list(trackers or [])

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row, allow_nan=True) + "\n")
        for tracker in self.trackers:
            tracker.log(row)

    def close(self, ok: bool = True) -> None:
        from ssltk.train.trackers import close_trackers

        close_trackers(self.trackers, ok=ok)
        self.trackers = []

    @staticmethod
    def rows_of(out: str | Path) -> list[dict[str, Any]]:
        """The rows written so far in ``out/metrics.jsonl``."""
        path = Path(out) / METRICS_FILE
        if not path.exists():
            return []
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def plot_loss_curve(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Total and per-objective loss against step; returns the PNG path (None without rows)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, [r["loss"] for r in rows], label="total", linewidth=2)
    for key in sorted(k for k in rows[0] if k.startswith("loss/")):
        ax.plot(steps, [r.get(key, float("nan")) for r in rows], label=key[5:], linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out) / CURVE_FILE
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path
