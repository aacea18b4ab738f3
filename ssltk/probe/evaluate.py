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

The ego-status baseline (:func:`ego_status_inputs`) sees no image: a ridge from
the speed, yaw rate and acceleration at ``t``, their pairwise products and squares
(a blind kinematic planner); it is scored on the waypoint and ``dx``/``dy`` rows
only, where it is the bar an image model must clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ssltk.probe.retrieval import RECALL_AT, cross_camera_retrieval, temporal_retrieval
from ssltk.probe.ridge import average_displacement_error, fit_ridge, r2_score
from ssltk.probe.targets import Targets

VARIANTS = ("t", "t,t-1")
EGO_INPUTS = ("speed", "yaw_rate", "accel")
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
    *,
    fit_every: int = 1,
    ego: np.ndarray | None = None,
) -> Outcome:
    """R² per target and waypoint ADE on the probe-test episodes, ridge fitted on probe-train.

    ``fit_every = k`` fits on every k-th probe-train row of each episode (all
    probe-test rows are scored). With ``ego`` (:func:`ego_status_inputs`, one row
    per feature row) the inputs are the ego status instead of ``feats`` and only
    the waypoint and ``dx``/``dy`` targets are reported.
    """
    out = Outcome()
    suffix = "" if variant == "t,t-1" else f" [{variant}]"
    idx, X = regression_inputs(rows, feats, variant)
    if ego is not None:
        X = ego[idx]
    Y = targets.Y[idx]
    eps = rows.episodes[idx]
    test = np.isin(eps, list(test_episodes))
    train = ~test & (rows.steps[idx] % max(1, int(fit_every)) == 0)
    if ego is not None:  # rows without a known ego status cannot be fitted or scored
        known = np.isfinite(X).all(axis=1)
        X = np.where(known[:, None], X, 0.0)
        train, test = train & known, test & known
    pred = predict_targets(X, Y, eps, train, test)
    wp = {targets.names[c] for pair in targets.waypoint_cols for c in pair}
    for j, name in enumerate(targets.names):
        if ego is not None and name not in wp:
            continue
        ok = test & np.isfinite(Y[:, j]) & np.isfinite(pred[:, j])
        out.metrics[(name + suffix, "R²")] = float(r2_score(Y[ok, j], pred[ok, j])[0]) if ok.sum() >= 2 else float("nan")
    if targets.waypoint_cols:
        cols = [c for pair in targets.waypoint_cols for c in pair]
        ok = test & np.isfinite(Y[:, cols]).all(axis=1) & np.isfinite(pred[:, cols]).all(axis=1)
        key = ("waypoints" + suffix, "ADE (m)")
        if ok.sum():
            H = len(targets.waypoint_cols)
            out.metrics[key] = average_displacement_error(Y[ok][:, cols].reshape(-1, H, 2), pred[ok][:, cols].reshape(-1, H, 2))
            train_mean = np.nanmean(Y[train][:, cols], axis=0)
            mean_ade = average_displacement_error(Y[ok][:, cols].reshape(-1, H, 2), np.broadcast_to(train_mean, (ok.sum(), len(cols))).reshape(-1, H, 2))
            out.notes[key] = f"predicting the probe-train mean gives {mean_ade:.2f} m"
        else:
            out.metrics[key] = float("nan")
    return out


def ego_status_inputs(table, rows: Rows) -> np.ndarray | None:
    """``[N, 9]`` ego status at each row's ``t``: speed, yaw rate, acceleration, their pairwise products and squares.

    Acceleration is the time derivative of speed where the data has no
    ``accel`` field. None when the data has no speed or no yaw rate.
    """
    fields = set(table.ego_fields)
    if not {"speed", "yaw_rate"} <= fields:
        return None
    cache: dict[str, np.ndarray] = {}
    out = np.full((len(rows), len(EGO_INPUTS)), np.nan)
    for i, (e, s) in enumerate(zip(rows.episodes.tolist(), rows.steps.tolist())):
        if e not in cache:
            ep = table.episodes[e]
            speed = ep.ego["speed"]
            if "accel" in ep.ego and np.isfinite(ep.ego["accel"]).any():
                accel = ep.ego["accel"]
            elif len(speed) > 1:
                accel = np.gradient(speed, ep.timestamps)
            else:
                accel = np.zeros_like(speed)
            cache[e] = np.stack([speed, ep.ego["yaw_rate"], accel], axis=1)
        j = table.episodes[e].index_of(int(s))
        if j >= 0:
            out[i] = cache[e][j]
    a, b = np.triu_indices(len(EGO_INPUTS))
    return np.concatenate([out, out[:, a] * out[:, b]], axis=1)


def sample_queries(candidates: np.ndarray, max_queries: int, seed: int) -> np.ndarray:
    """At most ``max_queries`` of ``candidates`` (sorted), chosen by ``seed``."""
    if len(candidates) <= max_queries:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=max_queries, replace=False))


def temporal_probe(rows: Rows, feats: np.ndarray, dts, max_queries: int, seed: int) -> Outcome:
    """Recall@1/5/10 and mean rank of frame ``t + Δt``; at most ``max_queries`` queries drawn with ``seed``.

    The caller passes the rows of one episode set (the run passes each seed's
    probe-test episodes): queries and gallery both come from it. Frames of the
    query's episode within ``±Δt`` are excluded from the gallery.
    """
    out = Outcome()
    for dt in dts:
        has_future = np.flatnonzero(_has_offset(rows, int(dt)))
        queries = sample_queries(has_future, max_queries, seed + 7919 * int(dt))
        res = temporal_retrieval(feats, rows.episodes, rows.steps, queries, int(dt))
        probe = f"temporal Δt={dt}"
        for k in RECALL_AT:
            out.metrics[(probe, f"R@{k}")] = res["recall"][k]
        out.metrics[(probe, "mean rank")] = res["mean_rank"]
        if res["queries"]:
            out.notes[(probe, "mean rank")] = f"{res['queries']} queries, ~{res['gallery']:.0f} candidates each"
    return out


def _has_offset(rows: Rows, dt: int) -> np.ndarray:
    present = set(zip(rows.episodes.tolist(), rows.steps.tolist()))
    return np.array([(e, int(s) + dt) in present for e, s in zip(rows.episodes.tolist(), rows.steps.tolist())], dtype=bool)


def cross_camera_probe(pools: dict[str, tuple[np.ndarray, np.ndarray]], anchor: str) -> Outcome:
    """Recall@1/5 of finding camera B's frame at the same ``t`` from the anchor camera's frame.

    ``pools[B] = (anchor_feats, b_feats)`` with matching rows (the same pooled
    timesteps); every row is a query (retrieval fits nothing, so no split).
    """
    out = Outcome()
    for cam, (fa, fb) in pools.items():
        res = cross_camera_retrieval(fa, fb, np.arange(len(fa)))
        key = (f"cross-camera {anchor}→{cam}", "R@1")
        out.metrics[key] = res["recall"][1]
        out.metrics[(key[0], "R@5")] = res["recall"][5]
        if res["queries"]:
            out.notes[key] = f"among {res['gallery']:.0f} {cam} frames"
    return out
