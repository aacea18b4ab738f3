"""Run metrics: ``metrics.jsonl`` (one line per logging step, also sent to the trackers) and the loss-curve PNG."""

from __future__ import annotations

import json
import math
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


def smooth(values: list[float], weight: float | None = None) -> list[float]:
    """TensorBoard-style debiased exponential moving average (NaN points are skipped, kept as NaN).

    ``weight`` defaults to a value that grows with the number of points (0 for a handful, up to 0.9).
    """
    n = sum(1 for v in values if math.isfinite(v))
    if weight is None:
        weight = min(0.9, max(0.0, 1.0 - 10.0 / max(n, 1)))
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        if not math.isfinite(v):
            out.append(float("nan"))
            continue
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def plot_loss_curve(rows: list[dict[str, Any]], out: Path, title: str | None = None) -> Path | None:
    """The loss against step, one panel per curve (the total, then each objective when composed): raw
    points faint, a smoothed line over them, each panel on its own scale; returns the PNG path (None without rows)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    objectives = sorted({k for r in rows for k in r if k.startswith("loss/")})
    curves = [("total loss" if len(objectives) > 1 else (objectives[0][5:] if objectives else "loss"), "loss")]
    if len(objectives) > 1:
        curves += [(k[5:], k) for k in objectives]
    cols = min(3, len(curves))
    nrows = math.ceil(len(curves) / cols)
    with plt.rc_context({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11}):
        fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows + 0.5), dpi=110, squeeze=False)
        for ax, (label, key) in zip(axes.flat, curves):
            values = [float(r.get(key, float("nan"))) for r in rows]
            ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1, marker="." if len(steps) < 50 else None,
                    label="logged")
            ax.plot(steps, smooth(values), color="tab:blue", linewidth=2.2, label="smoothed")
            ax.set_title(label)
            ax.set_xlabel("step")
            ax.set_ylabel("loss")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(curves):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=9, loc="upper right")
        last = rows[-1]
        head = title or f"pretraining loss ({', '.join(k[5:] for k in objectives) or 'loss'})"
        fig.suptitle(f"{head}: step {last['step']}, loss {last['loss']:.4g}", fontsize=13)
        fig.tight_layout()
        path = Path(out) / CURVE_FILE
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
    tmp.replace(path)
    return path
