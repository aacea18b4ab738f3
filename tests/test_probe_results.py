"""Probe result rows: seed statistics, delta vs random init, the not-observable rule, skipped rows."""

from __future__ import annotations

import json
import math

import pytest

from ssltk.probe.results import NOT_OBSERVABLE, assemble, stats

COLS = ["bundle", "random_init", "raw_pixels"]


def per_seed(values: dict[tuple[str, str], dict[str, list[float]]]) -> dict:
    """``{(probe, metric): {column: [seed0, seed1]}}`` → the shape run_probe feeds to assemble."""
    out = {}
    for s in (0, 1):
        metrics = {c: {k: v[c][s] for k, v in values.items()} for c in COLS}
        out[s] = (metrics, {("speed", "R²"): "a note"})
    return out


def rows_by_key(result):
    return {(r["probe"], r["metric"]): r for r in result["rows"]}


def make(values):
    return assemble(per_seed(values), columns=COLS, skipped=[{"probe": "x", "reason": "skipped: because"}], meta={"data": {}})


def test_stats_mean_sample_std_min_max():
    s = stats([1.0, 3.0, None])
    assert s == {"mean": 2.0, "std": pytest.approx(math.sqrt(2.0)), "min": 1.0, "max": 3.0}
    assert stats([None, None])["mean"] is None
    assert stats([5.0])["std"] == 0.0


def test_delta_and_noise_judgement():
    res = make({
        ("speed", "R²"): {"bundle": [0.8, 0.9], "random_init": [0.2, 0.3], "raw_pixels": [0.5, 0.5]},
        ("yaw_rate", "R²"): {"bundle": [0.5, 0.7], "random_init": [0.6, 0.8], "raw_pixels": [0.1, 0.1]},
    })
    rows = rows_by_key(res)
    speed = rows[("speed", "R²")]
    assert speed["delta_vs_random_init"] == pytest.approx(0.6)
    assert speed["within_noise"] is False and speed["note"] == "a note"
    assert speed["per_seed"]["bundle"] == [0.8, 0.9]
    assert rows[("yaw_rate", "R²")]["within_noise"] is True


def test_target_no_model_predicts_is_not_observable_not_a_loss():
    res = make({
        ("lane_offset", "R²"): {"bundle": [-0.2, -0.1], "random_init": [-0.01, 0.0], "raw_pixels": [-0.3, -0.05]},
        ("speed", "R²"): {"bundle": [-0.2, -0.1], "random_init": [-0.3, -0.2], "raw_pixels": [0.2, 0.3]},
    })
    rows = rows_by_key(res)
    lane = rows[("lane_offset", "R²")]
    assert lane["not_observable"] and lane["note"] == NOT_OBSERVABLE
    # raw pixels predict speed: the bundle's negative R² is a real shortfall, not unobservability
    assert not rows[("speed", "R²")]["not_observable"]


def test_waypoint_ade_not_observable_only_when_no_component_is():
    r2 = {"bundle": [-0.1, -0.2], "random_init": [-0.1, -0.1], "raw_pixels": [-0.5, -0.1]}
    ade = {"bundle": [1.0, 1.1], "random_init": [1.0, 1.2], "raw_pixels": [1.1, 1.0]}
    res = make({("dx@1s", "R²"): r2, ("dy@1s", "R²"): r2, ("waypoints", "ADE (m)"): ade})
    assert rows_by_key(res)[("waypoints", "ADE (m)")]["not_observable"]
    good = {"bundle": [0.5, 0.6], "random_init": [0.1, 0.1], "raw_pixels": [0.3, 0.2]}
    res = make({("dx@1s", "R²"): good, ("dy@1s", "R²"): r2, ("waypoints", "ADE (m)"): ade})
    assert not rows_by_key(res)[("waypoints", "ADE (m)")]["not_observable"]


def test_rows_are_ordered_by_family_and_empty_rows_become_skipped():
    nan = float("nan")
    res = make({
        ("temporal Δt=1", "top-1"): {"bundle": [0.5, 0.5], "random_init": [0.1, 0.2], "raw_pixels": [0.3, 0.3]},
        ("speed", "R²"): {"bundle": [0.5, 0.5], "random_init": [0.1, 0.2], "raw_pixels": [0.3, 0.3]},
        ("waypoints", "ADE (m)"): {"bundle": [1.0, 1.0], "random_init": [2.0, 2.0], "raw_pixels": [1.5, 1.5]},
        ("temporal Δt=10", "top-1"): {"bundle": [nan, nan], "random_init": [nan, nan], "raw_pixels": [nan, nan]},
    })
    assert [r["probe"] for r in res["rows"]] == ["waypoints", "speed", "temporal Δt=1"]
    assert [s["probe"] for s in res["skipped"]] == ["x", "temporal Δt=10 (top-1)"]
    json.dumps(res, allow_nan=False)  # NaN never reaches probe.json


def test_lower_is_better_metrics_are_flagged():
    res = make({("waypoints", "ADE (m)"): {"bundle": [1.0, 1.0], "random_init": [2.0, 2.0], "raw_pixels": [1.5, 1.5]}})
    row = res["rows"][0]
    assert row["higher_is_better"] is False and row["delta_vs_random_init"] == -1.0


COLS4 = ["bundle", "random_init", "raw_pixels", "ego_status"]
BASE = ["random_init", "raw_pixels", "ego_status"]


def judged(values: dict[str, list[float | None]], metric: str = "R²") -> dict:
    """One row with these per-seed values (ego_status may be missing) through assemble."""
    key = ("dy@1s", metric)
    out = {s: ({c: {key: values.get(c, [None, None])[s]} for c in COLS4}, {}) for s in (0, 1)}
    return assemble(out, columns=COLS4, baselines=BASE, skipped=[], meta={})["rows"][0]


@pytest.mark.parametrize(
    "bundle, verdict",
    [
        ([0.70, 0.72], "beats"),  # worst seed 0.70 above every baseline's best (0.62)
        ([0.60, 0.75], "within"),  # worst seed below the best baseline's best seed
        ([0.40, 0.50], "behind"),  # best seed below the best baseline's worst (0.55)
    ],
)
def test_verdict_is_judged_on_seed_extremes_against_every_baseline(bundle, verdict):
    row = judged({"bundle": bundle, "random_init": [0.1, 0.2], "raw_pixels": [0.55, 0.62], "ego_status": [0.3, 0.4]})
    assert row["best_baseline"] == "raw_pixels"
    assert row["delta_vs_best"] == pytest.approx(sum(bundle) / 2 - 0.585)
    assert row["verdict"] == verdict


def test_beating_the_best_baseline_by_mean_is_not_enough_to_beat_all():
    # raw pixels have the best mean, but ego status has one seed above the bundle's worst
    row = judged({"bundle": [0.66, 0.70], "random_init": [0.1, 0.1], "raw_pixels": [0.60, 0.62], "ego_status": [0.2, 0.67]})
    assert row["best_baseline"] == "raw_pixels" and row["verdict"] == "within"


def test_lower_is_better_verdict_and_delta_sign():
    row = judged({"bundle": [1.0, 1.1], "random_init": [2.0, 2.1], "raw_pixels": [1.5, 1.6], "ego_status": [1.2, 1.3]}, "ADE (m)")
    assert row["best_baseline"] == "ego_status"
    assert row["delta_vs_best"] == pytest.approx(0.2)  # positive = the bundle is better
    assert row["verdict"] == "beats"


def test_ego_status_never_makes_a_target_observable():
    row = judged({"bundle": [-0.1, -0.2], "random_init": [-0.1, 0.0], "raw_pixels": [-0.3, -0.1], "ego_status": [0.9, 0.95]})
    assert row["not_observable"]


def test_one_seed_has_no_verdict():
    key = ("speed", "R²")
    out = {0: ({c: {key: v} for c, v in zip(COLS4, [0.9, 0.1, 0.2, None])}, {})}
    row = assemble(out, columns=COLS4, baselines=BASE, skipped=[], meta={})["rows"][0]
    assert row["delta_vs_best"] == pytest.approx(0.7) and row["verdict"] is None
