"""The probe's table at 80 columns and its chart: nothing cut, labels explained, one panel per metric group."""

from __future__ import annotations

import pytest
from rich.console import Console

from ssltk.probe.report import footnotes, render_table, short_labels, write_chart
from ssltk.probe.results import assemble

PROBES = [("waypoints", "ADE (m)"), ("dx@0.5s", "R²"), ("dy@2s", "R²"), ("lane_offset", "R²"), ("steering", "R²"),
          ("temporal Δt=10", "R@10"), ("temporal Δt=10", "mean rank"), ("cross-camera front→front_right", "R@1"),
          ("cross-camera front→front_left", "R@5")]  # fmt: skip


def result(compares=()):
    columns = ["bundle", "random_init", "raw_pixels", "ego_status", *[f"compare:{c}" for c in compares]]
    per_seed = {}
    for s in (0, 1):
        metrics = {c: {k: (-12.345 if k[1] == "mean rank" else 0.123 + 0.01 * s) for k in PROBES} for c in columns}
        per_seed[s] = (metrics, {})
    res = assemble(per_seed, columns=columns, baselines=["random_init", "raw_pixels", "ego_status"], skipped=[],
                   meta={"bundle": {"path": "runs/a-bundle-with-a-long-name"}, "readout": "grid",
                         "data": {"anchor_frames": 10, "anchor_camera": "front", "episodes_used": 2}})  # fmt: skip
    return res


def printed(res, width=80) -> str:
    console = Console(width=width, record=True, force_terminal=False)
    console.print(render_table(res, width))
    return console.export_text()


@pytest.mark.parametrize("compares", [(), ("per-frame-run-with-long-name", "other-run-also-long"),
                                      tuple(f"a-long-compare-name-{i}" for i in range(5))])
def test_table_fits_80_columns_with_no_name_cut(compares):
    text = printed(result(compares))
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for label in ("lane_offset", "steering", "temporal Δt=10", "→front_right", "→front_left", "rank ↓", "R@10 ↑", "Δ best"):
        assert label in text, label
    for i in range(len(compares)):
        assert f" c{i + 1} " in text


def test_long_compare_names_get_a_legend():
    res = result(("per-frame-run-with-long-name", "short"))
    labels = short_labels(res["columns"])
    assert labels["compare:per-frame-run-with-long-name"] == "c1" and labels["compare:short"] == "short"
    legend = next(line for line in footnotes(res) if line.startswith("columns:"))
    assert "c1 = per-frame-run-with-long-name" in legend and "ego = ego status" in legend


def test_chart_has_a_panel_per_metric_group(tmp_path):
    import matplotlib.image

    path = write_chart(result(), tmp_path / "probe.png")
    h, w = matplotlib.image.imread(path).shape[:2]
    assert w >= 1200 and h >= 800  # large enough for its fonts to read at half size
