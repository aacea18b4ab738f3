"""Probe targets: future displacement in the ego frame (closed forms), scalars, skipped fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ssltk.probe.frames import Episode, FrameTable
from ssltk.probe.targets import build_targets, future_displacement, waypoint_names


def episode(ego: dict, fps: float = 10.0, n: int | None = None) -> Episode:
    n = n or len(next(iter(ego.values())))
    return Episode("ep", np.arange(n), np.arange(n) / fps, {k: np.asarray(v, float) for k, v in ego.items()})


@pytest.mark.parametrize("theta", [0.0, 0.7, -2.5])
def test_straight_line_goes_straight_ahead_whatever_the_heading(theta):
    v, fps, n = 8.0, 10.0, 40
    t = np.arange(n) / fps
    ep = episode({"x": 3 + v * t * math.cos(theta), "y": -1 + v * t * math.sin(theta), "heading": np.full(n, theta)}, fps)
    d = future_displacement(ep, (0.5, 1.0, 2.0))
    np.testing.assert_allclose(d[0], [4.0, 0.0, 8.0, 0.0, 16.0, 0.0], atol=1e-9)
    assert np.isfinite(d[n - 1 - 20]).all()  # exactly 2 s before the end
    assert np.isnan(d[n - 20, 4:]).all() and np.isfinite(d[n - 20, :4]).all()  # 2 s horizon runs off the end


def test_circular_arc_matches_closed_form():
    # constant speed v and yaw rate w: after h seconds, dx = R sin(wh), dy = R (1 - cos(wh)), R = v / w
    v, w, fps, n = 10.0, 0.4, 20.0, 200
    t = np.arange(n) / fps
    head = 0.3 + w * t
    R = v / w
    ep = episode({"x": R * np.sin(head), "y": -R * np.cos(head), "heading": head}, fps)
    d = future_displacement(ep, (1.0, 2.0))
    for h, col in ((1.0, 0), (2.0, 2)):
        np.testing.assert_allclose(d[37, col], R * math.sin(w * h), atol=1e-9)
        np.testing.assert_allclose(d[37, col + 1], R * (1 - math.cos(w * h)), atol=1e-9)  # a left turn: dy > 0


def test_positions_between_timestamps_are_interpolated():
    ep = episode({"x": [0.0, 1.0, 2.0], "y": [0.0, 0.0, 0.0], "heading": [0.0, 0.0, 0.0]}, fps=1.0)
    assert future_displacement(ep, (0.5,))[0, 0] == pytest.approx(0.5)


def test_unknown_heading_or_position_gives_nan():
    ep = episode({"x": [0.0, 1.0, 2.0, 3.0], "y": [0.0] * 4, "heading": [0.0, np.nan, 0.0, 0.0]}, fps=1.0)
    d = future_displacement(ep, (1.0,))
    assert np.isnan(d[1]).all() and d[0, 0] == pytest.approx(1.0)


def table_with(ego_fields: dict) -> FrameTable:
    ep = episode(ego_fields)
    return FrameTable(episodes={"ep": ep}, images={}, cameras=["front"])


def test_build_targets_rows_and_names():
    n = 30
    t = np.arange(n) / 10.0
    table = table_with({"x": 5 * t, "y": 0 * t, "heading": 0 * t, "speed": np.full(n, 5.0), "lane_offset": t})
    tg = build_targets(table, [("ep", 3), ("ep", 7)], horizons=(0.5, 1.0))
    assert tg.names == waypoint_names((0.5, 1.0)) + ["speed", "lane_offset"] == ["dx@0.5s", "dy@0.5s", "dx@1s", "dy@1s", "speed", "lane_offset"]
    np.testing.assert_allclose(tg.Y[:, 0], [2.5, 2.5])
    np.testing.assert_allclose(tg.Y[:, -1], [0.3, 0.7])
    assert tg.waypoint_cols == [(0, 1), (2, 3)]
    assert set(tg.skipped) == {"yaw_rate", "steering"}
    assert "no ego yaw_rate" in tg.skipped["yaw_rate"]


def test_missing_heading_skips_waypoints_with_a_note():
    table = table_with({"x": np.arange(10.0), "y": np.zeros(10), "speed": np.ones(10)})
    tg = build_targets(table, [("ep", 0)])
    assert tg.names == ["speed"] and not tg.waypoint_cols
    assert "heading" in tg.skipped["waypoints"]


def test_fields_that_are_always_unknown_count_as_missing():
    table = table_with({"speed": np.ones(5), "steering": np.full(5, np.nan)})
    tg = build_targets(table, [("ep", 1)])
    assert "steering" in tg.skipped and "steering" not in tg.names
