"""Retrieval probes: does the embedding find the right frame among distractors?

Similarity is the cosine of mean-centred features (each camera's pool is centred
by its own mean, for every model alike): un-centred post-ReLU features or raw
pixels are all positive and would make every cosine close to 1.

Ranks are 1-based and pessimistic on ties (a distractor as similar as the
positive counts as ranked above it), so a model with constant features gets
the worst rank, not the best.

* :func:`temporal_retrieval`: query frame ``t`` of an episode, positive
  ``t + Δt`` of the same episode; distractors are every frame of other episodes
  and frames of the same episode more than ``Δt`` away (nearer frames are not
  distractors: they are at least as close in time as the positive).
* :func:`cross_camera_retrieval`: query camera A at ``t``, positive camera B at
  the same ``t``; distractors are camera B at every other pooled time (the pool
  is strided, so the nearest distractor is a stride away).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def centred_unit(F: np.ndarray) -> np.ndarray:
    """Rows minus their mean, scaled to unit length (zero rows stay zero)."""
    F = np.asarray(F, np.float64)
    F = F - F.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(F, axis=1, keepdims=True)
    return F / np.where(norm > 1e-12, norm, 1.0)


def cosine(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``A @ B.T`` via torch (it honours ``torch.set_num_threads``; numpy's BLAS threads crawl on a busy machine)."""
    import torch

    return (torch.from_numpy(np.ascontiguousarray(A)) @ torch.from_numpy(np.ascontiguousarray(B)).T).numpy()


def positive_ranks(sims: np.ndarray, positive: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """1-based rank of ``sims[i, positive[i]]`` among the allowed gallery items of row ``i`` (ties count against)."""
    m = sims.shape[0]
    pos = sims[np.arange(m), positive][:, None]
    ahead = sims >= pos
    if allowed is not None:
        ahead &= allowed
    ahead[np.arange(m), positive] = False
    return 1 + ahead.sum(axis=1)


RECALL_AT = (1, 5, 10)


def summarise_ranks(ranks: np.ndarray, gallery_size: float) -> dict:
    """``top1`` (= recall at 1), ``recall`` ``{k: share of queries with rank <= k}``, mean rank, counts."""
    ranks = np.asarray(ranks, np.float64)
    if not len(ranks):
        return {"top1": float("nan"), "recall": {k: float("nan") for k in RECALL_AT}, "mean_rank": float("nan"),
                "queries": 0, "gallery": gallery_size}  # fmt: skip
    return {
        "top1": float((ranks == 1).mean()),
        "recall": {k: float((ranks <= k).mean()) for k in RECALL_AT},
        "mean_rank": float(ranks.mean()),
        "queries": int(len(ranks)),
        "gallery": gallery_size,
    }


def temporal_retrieval(
    feats: np.ndarray,
    episodes: Sequence[str],
    steps: Sequence[int],
    query_rows: Sequence[int],
    dt: int,
) -> dict:
    """Rank frame ``t + dt`` for each query row (rows without a ``t + dt`` frame are dropped)."""
    ep = np.asarray(episodes)
    st = np.asarray(steps, np.int64)
    where = {(e, int(s)): i for i, (e, s) in enumerate(zip(ep.tolist(), st.tolist()))}
    q, pos = [], []
    for r in query_rows:
        j = where.get((ep[r], int(st[r]) + dt))
        if j is not None:
            q.append(r)
            pos.append(j)
    if not q:
        return summarise_ranks(np.array([]), len(st))
    q_arr, pos_arr = np.array(q), np.array(pos)
    Z = centred_unit(feats)
    sims = cosine(Z[q_arr], Z)
    near = (ep[q_arr][:, None] == ep[None, :]) & (np.abs(st[q_arr][:, None] - st[None, :]) <= dt)
    ranks = positive_ranks(sims, pos_arr, allowed=~near)
    out = summarise_ranks(ranks, float(np.mean((~near).sum(axis=1) + 1)))
    return out


def cross_camera_retrieval(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    query_rows: Sequence[int],
) -> dict:
    """Rows of ``feats_a`` and ``feats_b`` are the same (episode, t) pool; rank B's row for A's query rows."""
    q = np.asarray(query_rows, np.int64)
    if not len(q):
        return summarise_ranks(np.array([]), len(feats_b))
    Za, Zb = centred_unit(feats_a), centred_unit(feats_b)
    sims = cosine(Za[q], Zb)
    return summarise_ranks(positive_ranks(sims, q), float(len(feats_b)))
