"""The probes for one feature set and one episode split: regression and retrieval.

Each function returns ``{(probe, metric): value}`` plus notes, on plain arrays:
features of the anchor camera's kept frames (rows in episode/time order) and
their ``(episode, step)`` identity.

Regression inputs (``variant``):

* ``"t"``: the features of frame ``t``;
* ``"t,t-1"``: features of ``t`` and ``t - 1`` concatenated, so that motion
  (speed, yaw rate, where the ego will be) is visible to a linear map. Frames
  without a ``t - 1`` are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssltk.probe.retrieval import cross_camera_retrieval, temporal_retrieval
from ssltk.probe.ridge import average_displacement_error, fit_ridge, r2_score
from ssltk.probe.targets import Targets

VARIANTS = ("t", "t,t-1")
Metrics = dict[tuple[str, str], float]


@dataclass
class Rows:
    """Identity of the anchor camera's feature rows."""

    episodes: np.ndarray  # str per row
    steps: np.ndarray  # int per row

    def __len__(self) -> int:
        return len(self.steps)

    def previous(self) -> np.ndarray:
        """Row index of ``(episode, step - 1)`` per row, -1 where absent."""
        where = {(e, int(s)): i for i, (e, s) in enumerate(zip(self.episodes.tolist(), self.steps.tolist()))}
        return np.array([where.get((e, int(s) - 1), -1) for e, s in zip(self.episodes.tolist(), self.steps.tolist())])


@dataclass
class Outcome:
    metrics: Metrics = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)


def regression_inputs(rows: Rows, feats: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """``(row indices, X)`` for a regression input variant."""
    if variant == "t":
        return np.arange(len(rows)), feats
    if variant == "t,t-1":
        prev = rows.previous()
        idx = np.flatnonzero(prev >= 0)
        return idx, np.concatenate([feats[idx], feats[prev[idx]]], axis=1)
    raise ValueError(f"unknown regression input variant {variant!r}; use one of {VARIANTS}")


def _column_groups(Y: np.ndarray) -> dict[bytes, list[int]]:
    """Target columns grouped by identical known-value masks (one ridge fit per group)."""
    groups: dict[bytes, list[int]] = {}
    for j in range(Y.shape[1]):
        groups.setdefault(np.isfinite(Y[:, j]).tobytes(), []).append(j)
    return groups


def predict_targets(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Ridge predictions ``[N, K]`` on test rows (NaN elsewhere or where a target has too little data)."""
    pred = np.full(Y.shape, np.nan)
    for cols in _column_groups(Y).values():
        known = np.isfinite(Y[:, cols[0]])
        tr, te = train & known, test & known
        if tr.sum() < 3 or te.sum() < 1:
            continue
        model = fit_ridge(X[tr], Y[tr][:, cols], groups[tr])
        pred[np.ix_(te, cols)] = model.predict(X[te])
    return pred


def regression_probe(
    rows: Rows,
    feats: np.ndarray,
    targets: Targets,
    test_episodes: set[str],
    variant: str,
) -> Outcome:
    """R² per target and waypoint ADE on the probe-test episodes, ridge fitted on probe-train."""
    out = Outcome()
    suffix = "" if variant == "t,t-1" else f" [{variant}]"
    idx, X = regression_inputs(rows, feats, variant)
    Y = targets.Y[idx]
    eps = rows.episodes[idx]
    test = np.isin(eps, list(test_episodes))
    pred = predict_targets(X, Y, eps, ~test, test)
    for j, name in enumerate(targets.names):
        ok = test & np.isfinite(Y[:, j]) & np.isfinite(pred[:, j])
        out.metrics[(name + suffix, "R²")] = float(r2_score(Y[ok, j], pred[ok, j])[0]) if ok.sum() >= 2 else float("nan")
    if targets.waypoint_cols:
        cols = [c for pair in targets.waypoint_cols for c in pair]
        ok = test & np.isfinite(Y[:, cols]).all(axis=1) & np.isfinite(pred[:, cols]).all(axis=1)
        key = ("waypoints" + suffix, "ADE (m)")
        if ok.sum():
            H = len(targets.waypoint_cols)
            out.metrics[key] = average_displacement_error(Y[ok][:, cols].reshape(-1, H, 2), pred[ok][:, cols].reshape(-1, H, 2))
            train_mean = np.nanmean(Y[~test][:, cols], axis=0)
            mean_ade = average_displacement_error(Y[ok][:, cols].reshape(-1, H, 2), np.broadcast_to(train_mean, (ok.sum(), len(cols))).reshape(-1, H, 2))
            out.notes[key] = f"predicting the probe-train mean gives {mean_ade:.2f} m"
        else:
            out.metrics[key] = float("nan")
    return out


def sample_queries(candidates: np.ndarray, max_queries: int, seed: int) -> np.ndarray:
    """At most ``max_queries`` of ``candidates`` (sorted), chosen by ``seed``."""
    if len(candidates) <= max_queries:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=max_queries, replace=False))


def temporal_probe(rows: Rows, feats: np.ndarray, test_episodes: set[str], dts, max_queries: int, seed: int) -> Outcome:
    """Top-1 and mean rank of frame ``t + Δt`` for queries from the probe-test episodes."""
    out = Outcome()
    queries = sample_queries(np.flatnonzero(np.isin(rows.episodes, list(test_episodes))), max_queries, seed)
    for dt in dts:
        res = temporal_retrieval(feats, rows.episodes, rows.steps, queries, int(dt))
        out.metrics[(f"temporal Δt={dt}", "top-1")] = res["top1"]
        out.metrics[(f"temporal Δt={dt}", "mean rank")] = res["mean_rank"]
        if res["queries"]:
            out.notes[(f"temporal Δt={dt}", "mean rank")] = f"of ~{res['gallery']:.0f} candidates"
    return out


def cross_camera_probe(
    pools: dict[str, tuple[Rows, np.ndarray, np.ndarray]],
    anchor: str,
    test_episodes: set[str],
) -> Outcome:
    """Top-1 of finding camera B's frame at the same ``t`` from the anchor camera's frame.

    ``pools[B] = (rows, anchor_feats, b_feats)`` with matching rows.
    """
    out = Outcome()
    for cam, (rows, fa, fb) in pools.items():
        queries = np.flatnonzero(np.isin(rows.episodes, list(test_episodes)))
        res = cross_camera_retrieval(fa, fb, queries)
        key = (f"cross-camera {anchor}→{cam}", "top-1")
        out.metrics[key] = res["top1"]
        if res["queries"]:
            out.notes[key] = f"among {res['gallery']:.0f} {cam} frames"
    return out
