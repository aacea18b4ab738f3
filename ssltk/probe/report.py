"""Show and save probe results: a rich table, ``probe.json`` and a PNG chart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.table import Table

LABELS = {"bundle": "this bundle", "random_init": "random init", "raw_pixels": "raw pixels"}


def column_label(name: str) -> str:
    return LABELS.get(name, name.removeprefix("compare:"))


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    if metric == "mean rank":
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_cell(metric: str, summary: dict[str, float | None], n_seeds: int) -> str:
    """``mean ±std`` (just the mean for one seed); an R² below -1 shows as ``< -1`` (probe.json keeps it)."""
    if summary["mean"] is None:
        return "–"
    if metric == "R²" and summary["mean"] < -1:
        return "< -1"
    if n_seeds < 2:
        return _fmt(metric, summary["mean"])
    return f"{_fmt(metric, summary['mean'])} ±{_fmt(metric, summary['std'])}"


def _delta_cell(row: dict[str, Any]) -> str:
    d = row["delta_vs_random_init"]
    if d is None or row["not_observable"]:
        return "–"
    text = f"{'+' if d >= 0 else ''}{_fmt(row['metric'], d)}"
    if row["within_noise"]:
        return f"[yellow]~{text}[/]"
    better = (d > 0) == row["higher_is_better"] and d != 0
    return f"[green]{text}[/]" if better else f"[red]{text}[/]"


def render_table(result: dict[str, Any]) -> Table:
    """One line per (probe, metric): every column's mean ±std over seeds, and the gain over random init."""
    seeds = result["seeds"]
    table = Table(title=f"ssltk probe: {Path(result['bundle']['path']).name}")
    table.add_column("probe")
    table.add_column("metric", no_wrap=True)
    for col in result["columns"]:
        table.add_column(column_label(col), justify="right")
    table.add_column("Δ vs random init", justify="right")
    for row in result["rows"]:
        arrow = "↑" if row["higher_is_better"] else "↓"
        cells = [format_cell(row["metric"], row["summary"][c], len(seeds)) for c in result["columns"]]
        probe = f"[dim]{row['probe']} *[/]" if row["not_observable"] else row["probe"]
        table.add_row(probe, f"{row['metric']} {arrow}", *cells, _delta_cell(row))
    return table


def footnotes(result: dict[str, Any]) -> list[str]:
    """Lines to print under the table: how to read it, per-row notes, skipped probes."""
    d = result["data"]
    lines = [
        f"mean ±std over seeds {', '.join(map(str, result['seeds']))}; {d['anchor_frames']} {d['anchor_camera']} frames "
        f"from {d['episodes_used']} episodes; ↑ higher is better, ↓ lower; ~ = within the seeds' spread",
    ]
    if any(r["not_observable"] for r in result["rows"]):
        lines.append("* not observable from these frames: no model, not even raw pixels, beats the mean (R² ≤ 0)")
    lines += [f"{r['probe']} ({r['metric']}): {r['note']}" for r in result["rows"] if r["note"] and not r["not_observable"]]
    lines += skipped_lines(result)
    return lines


def skipped_lines(result: dict[str, Any]) -> list[str]:
    return [f"{s['probe']}: {s['reason']}" for s in result.get("skipped", [])]


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as JSON (atomically: a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_chart(result: dict[str, Any], path: str | Path) -> Path:
    """Bar charts (matplotlib, Agg): R² per target, retrieval top-1, waypoint ADE; error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("R² on probe-test (↑)", "R²", -0.5),
        ("retrieval top-1 (↑)", "top-1", 0.0),
        ("waypoint ADE, m (↓)", "ADE (m)", None),
    ]
    panels = [(t, [r for r in result["rows"] if r["metric"] == m], lo) for t, m, lo in panels]
    panels = [p for p in panels if p[1]]
    widths = [max(2, len(rows)) for _, rows, _ in panels] or [1]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(2.5 + 0.9 * sum(widths), 4.4),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    cols = result["columns"]
    for ax, (title, rows, lo) in zip(axes[0], panels):
        _bars(ax, rows, cols, lo)
        ax.set_title(title, fontsize=10)
    if panels:
        from matplotlib.patches import Patch

        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        handles = [Patch(color=colours[i % len(colours)], label=column_label(c)) for i, c in enumerate(cols)]
        fig.legend(handles=handles, loc="upper right", ncol=len(cols), fontsize=8, frameon=False)
    fig.suptitle(f"ssltk probe: {Path(result['bundle']['path']).name}", fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _bars(ax, rows: list[dict[str, Any]], cols: list[str], lo: float | None) -> None:
    """Grouped bars, one group per row; with ``lo``, values below it are drawn clipped (hatched, no error bar)."""
    import numpy as np

    n = len(cols)
    width = 0.8 / n
    x = np.arange(len(rows))
    for i, col in enumerate(cols):
        means = np.array([np.nan if r["summary"][col]["mean"] is None else r["summary"][col]["mean"] for r in rows])
        stds = np.array([r["summary"][col]["std"] or 0.0 for r in rows])
        clipped = np.zeros(len(rows), bool) if lo is None else means < lo
        shown = means if lo is None else np.maximum(means, lo)
        bars = ax.bar(x + (i - (n - 1) / 2) * width, shown, width, yerr=np.where(clipped, 0.0, stds),
                      capsize=2, color=f"C{i}")
        for bar, c in zip(bars, clipped):
            if c:
                bar.set_hatch("//")
    ax.set_xticks(x)
    ax.set_xticklabels([r["probe"].replace("cross-camera ", "") for r in rows], rotation=35, ha="right", fontsize=8)
    ax.axhline(0.0, color="black", linewidth=0.6)
    if lo is not None:
        ax.set_ylim(lo, 1.05)
    for j, r in enumerate(rows):
        if r["not_observable"]:
            ax.annotate("n/o", (j, 1.0), ha="center", va="top", fontsize=7, color="grey")
