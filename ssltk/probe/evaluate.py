"""The probes for one feature set and one episode split: regression and retrieval.

Each function returns ``{(probe, metric): value}`` plus notes, on plain arrays:
features of the anchor camera's kept frames (rows in episode/time order) and
their ``(episode, step)`` identity.

Regression inputs (``variant``):

* ``"t"``: the features of frame ``t``;
* ``"t,t-1"``: ``[f(t), f(t-1), |f(t) - f(t-1)|]``, so that motion (speed, yaw
  rate, where the ego will be) is visible to a linear map: the signed change is
  a linear function of the first two parts, but *how much* the frame changed
  (which grows with speed) is not, hence the element-wise absolute difference.
  Frames without a ``t - 1`` are left out.
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
        now, before = feats[idx], feats[prev[idx]]
        return idx, np.concatenate([now, before, np.abs(now - before)], axis=1)
    raise ValueError(f"unknown regression input variant {variant!r}; use one of {VARIANTS}")


def _column_groups(Y: np.ndarray, min_share: float = 0.75) -> list[tuple[np.ndarray, list[int]]]:
    """Target columns that share one ridge fit, with the rows they are fitted on.

    Columns are grouped by their known-value masks; a column joins a group when
    the rows known for both keep at least ``min_share`` of its own and of the
    group's rows (e.g. waypoints at 0.5 s, 1 s and 2 s lose only each episode's
    last seconds). One decomposition then serves the whole group.
    """
    groups: list[tuple[np.ndarray, list[int]]] = []
    order = sorted(range(Y.shape[1]), key=lambda j: -int(np.isfinite(Y[:, j]).sum()))
    for j in order:  # largest mask first: a group's first column has the most rows
        mask = np.isfinite(Y[:, j])
        for g, (gmask, cols) in enumerate(groups):
            both = gmask & mask
            if both.sum() >= min_share * np.isfinite(Y[:, cols[0]]).sum():
                groups[g] = (both, cols + [j])
                break
        else:
            groups.append((mask, [j]))
    return groups


def predict_targets(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Ridge predictions ``[N, K]`` on test rows (NaN elsewhere or where a target has too little data)."""
    pred = np.full(Y.shape, np.nan)
    for known, cols in _column_groups(Y):
        tr, te = train & known, test & np.isfinite(Y[:, cols]).any(axis=1)
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


def temporal_probe(rows: Rows, feats: np.ndarray, dts, max_queries: int, seed: int) -> Outcome:
    """Top-1 and mean rank of frame ``t + Δt``; at most ``max_queries`` queries drawn with ``seed``.

    Retrieval fits nothing, so queries come from every kept episode (no split).
    """
    out = Outcome()
    for dt in dts:
        has_future = np.flatnonzero(_has_offset(rows, int(dt)))
        queries = sample_queries(has_future, max_queries, seed + 7919 * int(dt))
        res = temporal_retrieval(feats, rows.episodes, rows.steps, queries, int(dt))
        out.metrics[(f"temporal Δt={dt}", "top-1")] = res["top1"]
        out.metrics[(f"temporal Δt={dt}", "mean rank")] = res["mean_rank"]
        if res["queries"]:
            out.notes[(f"temporal Δt={dt}", "mean rank")] = f"{res['queries']} queries, ~{res['gallery']:.0f} candidates each"
    return out


def _has_offset(rows: Rows, dt: int) -> np.ndarray:
    present = set(zip(rows.episodes.tolist(), rows.steps.tolist()))
    return np.array([(e, int(s) + dt) in present for e, s in zip(rows.episodes.tolist(), rows.steps.tolist())], dtype=bool)


def cross_camera_probe(pools: dict[str, tuple[np.ndarray, np.ndarray]], anchor: str) -> Outcome:
    """Top-1 of finding camera B's frame at the same ``t`` from the anchor camera's frame.

    ``pools[B] = (anchor_feats, b_feats)`` with matching rows (the same pooled
    timesteps); every row is a query (retrieval fits nothing, so no split).
    """
    out = Outcome()
    for cam, (fa, fb) in pools.items():
        res = cross_camera_retrieval(fa, fb, np.arange(len(fa)))
        key = (f"cross-camera {anchor}→{cam}", "top-1")
        out.metrics[key] = res["top1"]
        if res["queries"]:
            out.notes[key] = f"among {res['gallery']:.0f} {cam} frames"
    return out
