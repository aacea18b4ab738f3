"""Retrieval probes: ranks by a naive reference, identical frames, ties, distractor rules."""

from __future__ import annotations

import numpy as np
import pytest

from ssltk.probe.retrieval import (
    centred_unit,
    cross_camera_retrieval,
    positive_ranks,
    temporal_retrieval,
)


def naive_rank(sims_row, positive, allowed):
    """1 + number of allowed distractors at least as similar as the positive."""
    return 1 + sum(1 for j, s in enumerate(sims_row) if j != positive and allowed[j] and s >= sims_row[positive])


def test_positive_ranks_match_naive_reference():
    rng = np.random.default_rng(0)
    sims = rng.normal(size=(12, 30)).round(1)  # rounding creates ties
    positive = rng.integers(0, 30, 12)
    allowed = rng.random((12, 30)) > 0.3
    ranks = positive_ranks(sims, positive, allowed)
    assert list(ranks) == [naive_rank(sims[i], positive[i], allowed[i]) for i in range(12)]


def test_centred_unit_rows():
    Z = centred_unit(np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]]))
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0)
    assert np.allclose(centred_unit(np.ones((3, 4))), 0.0)  # constant features: zero vectors, no NaN


def rows(n_episodes: int, length: int):
    eps = np.repeat([f"e{i}" for i in range(n_episodes)], length)
    steps = np.tile(np.arange(length), n_episodes)
    return eps, steps


@pytest.mark.parametrize("dt", [1, 3])
def test_temporal_identical_frames_give_top1_of_one(dt):
    # frame t and t+dt have identical features; every other frame differs
    eps, steps = rows(3, 12)
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(len(steps), 16))
    for i in range(len(steps)):
        if steps[i] % (2 * dt) >= dt:
            feats[i] = feats[i - dt]  # pairs (t, t+dt) for t with t % 2dt < dt
    queries = [i for i in range(len(steps)) if steps[i] % (2 * dt) < dt and steps[i] + dt < 12]
    res = temporal_retrieval(feats, eps, steps, queries, dt)
    assert res["top1"] == 1.0 and res["mean_rank"] == 1.0 and res["queries"] == len(queries)


def test_temporal_constant_features_rank_last():
    eps, steps = rows(2, 10)
    res = temporal_retrieval(np.ones((20, 4)), eps, steps, [0, 1, 2], 1)
    assert res["top1"] == 0.0 and res["mean_rank"] > 10


def test_temporal_nearer_frames_of_the_same_episode_are_not_distractors():
    # a smooth embedding of time: the frames between t and t+dt (and t-dt) are closer than t+dt
    eps, steps = rows(1, 30)
    feats = np.exp(-(((steps[:, None] - np.arange(-10, 40)[None, :]) / 4.0) ** 2))
    res = temporal_retrieval(feats, eps, steps, [10], 5)
    # allowed gallery: steps with |s - 10| > 5 plus the positive 15; 15 is the most similar of those
    assert res["top1"] == 1.0
    assert res["gallery"] == 30 - 11 + 1
    Z = centred_unit(feats)
    assert (Z[10] @ Z[11]) > (Z[10] @ Z[15])  # so counting t+1 as a distractor would have failed


def test_temporal_queries_without_a_future_frame_are_dropped():
    eps, steps = rows(2, 5)
    res = temporal_retrieval(np.random.default_rng(0).normal(size=(10, 3)), eps, steps, [3, 4, 9], 2)
    assert res["queries"] == 0 and np.isnan(res["top1"])


def test_temporal_other_episodes_are_distractors():
    # episode e1 holds an exact copy of the query: the positive cannot be top-1
    eps, steps = rows(2, 6)
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(12, 8))
    feats[1] = feats[0] * 0.99 + 0.01 * rng.normal(size=8)  # positive t+1, similar to the query
    feats[9] = feats[0]  # a distractor in another episode equals the query
    assert temporal_retrieval(feats, eps, steps, [0], 1)["top1"] == 0.0


def test_cross_camera_identical_frames_give_top1_of_one():
    rng = np.random.default_rng(3)
    fa = rng.normal(size=(20, 8))
    res = cross_camera_retrieval(fa, fa.copy(), np.arange(20))
    assert res["top1"] == 1.0 and res["gallery"] == 20


def test_cross_camera_unrelated_cameras_are_near_chance():
    rng = np.random.default_rng(4)
    res = cross_camera_retrieval(rng.normal(size=(200, 8)), rng.normal(size=(200, 8)), np.arange(200))
    assert res["top1"] < 0.05 and 60 < res["mean_rank"] < 140
