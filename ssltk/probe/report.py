"""Show and save probe results: a rich table, ``probe.json`` and a PNG chart."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

LABELS = {"bundle": "bundle", "random_init": "random", "raw_pixels": "pixels", "ego_status": "ego"}
LONG_LABELS = {"bundle": "this bundle", "random_init": "random init", "raw_pixels": "raw pixels", "ego_status": "ego status"}
METRIC_LABELS = {"R²": "R²", "ADE (m)": "ADE m", "mean rank": "rank", "top-1": "top-1"}
VERDICT_MARK = {"beats": "✓", "within": "~", "behind": ""}
MAX_LABEL = 9  # longer compare names become c1, c2, ... with a legend


def column_label(name: str) -> str:
    return LONG_LABELS.get(name, name.removeprefix("compare:"))


def short_labels(columns: list[str]) -> dict[str, str]:
    """Header per column: short fixed labels; a compare bundle's name, or ``cN`` when it is long."""
    out, n = {}, 0
    for c in columns:
        if c in LABELS:
            out[c] = LABELS[c]
        else:
            n += 1
            name = c.removeprefix("compare:")
            out[c] = name if len(name) <= MAX_LABEL else f"c{n}"
    return out


def probe_label(probe: str, anchor: str | None = None) -> str:
    """Short row label: ``→front_left`` for cross-camera rows, the probe name otherwise."""
    if probe.startswith("cross-camera "):
        rest = probe.removeprefix("cross-camera ")
        return "→" + rest.split("→", 1)[1] if "→" in rest else rest
    return probe


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "–"
    if metric == "mean rank":
        return f"{value:.1f}"
    return f"{value:.2f}"


def _std(metric: str, value: float) -> str:
    """Compact spread: ``.03`` for values below 1, ``1.2`` above."""
    text = f"{value:.1f}" if metric == "mean rank" or value >= 1 else f"{value:.2f}"
    return text[1:] if text.startswith("0.") else text


def format_cell(metric: str, summary: dict[str, float | None], n_seeds: int, with_std: bool = True) -> str:
    """``mean±std`` (just the mean for one seed or without std); an R² below -1 shows as ``< -1`` (probe.json keeps it)."""
    if summary["mean"] is None:
        return "–"
    if metric == "R²" and summary["mean"] < -1:
        return "< -1"
    if n_seeds < 2 or not with_std:
        return _fmt(metric, summary["mean"])
    return f"{_fmt(metric, summary['mean'])}±{_std(metric, summary['std'])}"


def _delta_cell(row: dict[str, Any]) -> str:
    d = row["delta_vs_best"]
    if d is None or row["not_observable"]:
        return "–"
    shown = d if row["higher_is_better"] else -d  # in the metric's own units and sign
    text = f"{'+' if shown >= 0 else ''}{_fmt(row['metric'], shown)}"
    verdict = row["verdict"]
    if verdict == "beats":
        return f"[green]{text}✓[/]"
    if verdict == "within":
        return f"[yellow]~{text}[/]"
    if verdict == "behind":
        return f"[red]{text}[/]"
    return text


def _table(result: dict[str, Any], columns: list[str], with_std: bool, title: str | None = None) -> Table:
    seeds = result["seeds"]
    labels = short_labels(result["columns"])
    if title is None:
        title = f"ssltk probe: {_title_name(result)}"
        if result.get("readout"):
            title += f" · readout {result['readout']}"
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("probe", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    for col in columns:
        table.add_column(labels[col], justify="right", no_wrap=True)
    has_bundle = "bundle" in result["columns"]
    if has_bundle:
        table.add_column("Δ best", justify="right", no_wrap=True)
    group = None
    for row in result["rows"]:
        g = _section(row["probe"])
        if group is not None and g != group:
            table.add_section()
        group = g
        arrow = "↑" if row["higher_is_better"] else "↓"
        cells = [format_cell(row["metric"], row["summary"][c], len(seeds), with_std) for c in columns]
        label = probe_label(row["probe"])
        probe = f"[dim]{label}*[/]" if row["not_observable"] else label
        metric = f"{METRIC_LABELS.get(row['metric'], row['metric'])} {arrow}"
        table.add_row(probe, metric, *cells, *([_delta_cell(row)] if has_bundle else []))
    return table


def _section(probe: str) -> str:
    for prefix in ("waypoints", "temporal", "cross-camera"):
        if probe.startswith(prefix):
            return prefix
    return "regression"


def _title_name(result: dict[str, Any]) -> str:
    b = result.get("bundle")
    return Path(b["path"]).name if b else "data baselines only (no bundle)"


def render_table(result: dict[str, Any], width: int | None = None):
    """One line per (probe, metric): every column's mean ±std over seeds and Δ vs the best baseline.

    The output fits ``width`` columns (default: the console's), nothing cut:
    with too many ``--compare`` columns the ±std parts go (probe.json keeps
    them), and compares that still do not fit move to further tables (probe,
    metric, bundle and those compares).
    """
    from rich.console import Console, Group

    width = width or Console().width
    measure = Console(width=10_000)

    def fits(t: Table) -> bool:
        return measure.measure(t).maximum <= width

    own = [c for c in result["columns"] if not c.startswith("compare:")]
    compares = [c for c in result["columns"] if c.startswith("compare:")]
    table = _table(result, result["columns"], with_std=True)
    if fits(table):
        return table
    main, rest = list(own), list(compares)
    while rest and fits(_table(result, main + rest[:1], with_std=False)):
        main.append(rest.pop(0))
    tables = [_table(result, main, with_std=False)]
    while rest:
        chunk = [rest.pop(0)]
        lead = ["bundle"] if "bundle" in own else []
        while rest and fits(_table(result, lead + chunk + rest[:1], with_std=False, title="")):
            chunk.append(rest.pop(0))
        tables.append(_table(result, lead + chunk, with_std=False, title="more --compare bundles"))
    tables[-1].caption = "means only (too many columns for ±std at this width; see probe.json)"
    return tables[0] if len(tables) == 1 else Group(*tables)


def footnotes(result: dict[str, Any]) -> list[str]:
    """Lines to print under the table: how to read it, per-row notes, skipped probes."""
    d = result["data"]
    labels = short_labels(result["columns"])
    legend = ", ".join(f"{labels[c]} = {column_label(c) if c in LONG_LABELS else c.removeprefix('compare:')}"
                       for c in result["columns"] if labels[c] != column_label(c))  # fmt: skip
    lines = [
        f"mean±std over seeds {', '.join(map(str, result['seeds']))}; {d['anchor_frames']} {d['anchor_camera']} frames "
        f"from {d['episodes_used']} episodes; ↑ higher is better, ↓ lower",
        f"columns: {legend}" + ("; ego = ridge from speed, yaw rate, acceleration at t (no image)" if "ego_status" in result["columns"] else ""),
    ]
    if "bundle" in result["columns"] and result.get("baselines"):
        lines.append("Δ best = bundle − the row's best baseline; ✓ beats: the bundle's worst seed is better than every "
                     "baseline's best seed; ~ within the seeds' spread; red: the best baseline's worst seed is better")
    if any(r["probe"].startswith("temporal") for r in result["rows"]):
        lines.append("temporal Δt=k: find frame t+k among the probe-test episodes' frames (same-episode frames within "
                     "±k excluded); R@k = share of queries with the positive in the top k")
    if any(r["probe"].startswith("cross-camera") for r in result["rows"]):
        lines.append(f"→cam: from {d['anchor_camera']} at t, find camera cam's frame at the same t")
    if result.get("readout"):
        lines.append(f"readout {result['readout']}: " + READOUT_TEXT.get(str(result["readout"]), ""))
    if any(r["not_observable"] for r in result["rows"]):
        lines.append("* not observable from these frames: no image column, not even raw pixels, beats the mean (R² ≤ 0)")
    lines += [f"{r['probe']} ({r['metric']}): {r['note']}" for r in result["rows"] if r["note"] and not r["not_observable"]]
    lines += skipped_lines(result)
    return lines


READOUT_TEXT = {
    "grid": "the last feature map average-pooled to 2×2 cells (pixels keep their 16×16 thumbnail)",
    "gap": "the backbone's pooled output (global average pooling)",
}


def skipped_lines(result: dict[str, Any]) -> list[str]:
    return [f"{s['probe']}: {s['reason']}" for s in result.get("skipped", [])]


def write_json(result: dict[str, Any], path: str | Path) -> Path:
    """Write ``result`` as JSON (atomically: a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


CHART_PANELS = (  # (title, metric, which rows, lower y limit)
    ("ego motion and lane: R² on probe-test ↑", "R²", "regression", -0.5),
    ("waypoints: ADE in metres ↓", "ADE (m)", "waypoints", None),
    ("temporal retrieval: R@1 ↑", "R@1", "temporal", 0.0),
    ("cross-camera retrieval: R@1 ↑", "R@1", "cross-camera", 0.0),
)


def write_chart(result: dict[str, Any], path: str | Path) -> Path:
    """One bar panel per metric group (matplotlib, Agg), error bars = std over seeds.

    Sized to stay legible at half size: 14 in wide at 100 dpi, 13-15 pt text.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for title, metric, section, lo in CHART_PANELS:
        rows = [r for r in result["rows"] if r["metric"] == metric and _section(r["probe"]) == section]
        if rows:
            panels.append((title, rows, lo))
    cols = result["columns"]
    n = max(1, len(panels))
    ncols = 2 if n > 1 else 1
    nrows = -(-n // ncols)
    with plt.rc_context({"font.size": 13, "axes.titlesize": 15, "xtick.labelsize": 13, "ytick.labelsize": 12,
                         "legend.fontsize": 13}):  # fmt: skip
        fig, axes = plt.subplots(nrows, ncols, figsize=(14, 4.6 * nrows + 1.2), squeeze=False)
        for ax, (title, rows, lo) in zip(axes.flat, panels):
            _bars(ax, rows, cols, lo)
            ax.set_title(title, loc="left")
        for ax in list(axes.flat)[len(panels):]:
            ax.set_visible(False)
        from matplotlib.patches import Patch

        handles = [Patch(color=f"C{i}", label=column_label(c)) for i, c in enumerate(cols)]
        fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, 1 - 0.5 / (4.6 * nrows + 1.2)),
                   ncol=min(len(cols), 6), frameon=False)  # fmt: skip
        name = _title_name(result)
        readout = f" · readout {result['readout']}" if result.get("readout") else ""
        fig.suptitle(f"ssltk probe: {name}{readout} · mean ± std over seeds {', '.join(map(str, result['seeds']))}",
                     fontsize=16, x=0.01, y=0.995, ha="left")  # fmt: skip
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.9 / (4.6 * nrows + 1.2)))
        path = Path(path)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        fig.savefig(tmp, dpi=100)
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
    ax.set_xticklabels([probe_label(r["probe"]).removeprefix("temporal ") for r in rows], rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.6)
    if lo is not None:
        ax.set_ylim(lo, 1.05)
    for j, r in enumerate(rows):
        if r["not_observable"]:
            ax.annotate("n/o", (j, 1.0), ha="center", va="top", fontsize=11, color="grey")
