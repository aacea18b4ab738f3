"""Shared helpers for objective tests: a loop-based reference loss and hand-made batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssltk.batch import validate_batch


def rows_of(emb: torch.Tensor, batch: dict) -> list[dict]:
    """One dict per (sample, slot, camera) entry, in plain Python."""
    B, T, V, _ = emb.shape
    out = []
    for b in range(B):
        for t in range(T):
            for v in range(V):
                out.append(
                    dict(
                        b=b, t=t, v=v,
                        episode=int(batch["episode"][b, t]),
                        frame=int(batch["frame_index"][b, t]),
                        valid=bool(batch["mask"][b, t, v]),
                        z=F.normalize(emb[b, t, v].double(), dim=0),
                    )
                )
    return out


def naive_loss(emb, batch, tau, is_pos, is_excluded=lambda a, k: False, is_anchor=lambda a: True):
    """Loops over anchors: mean over anchors with a positive of mean_p [logsumexp_A s - s_p].

    ``is_pos(a, k)`` / ``is_excluded(a, k)`` / ``is_anchor(a)`` take row dicts (see
    :func:`rows_of`); the row itself and invalid rows are never keys.
    Returns ``(loss, number of anchors used, number of valid anchors without positive)``.
    """
    rows = rows_of(emb, batch)
    losses, no_pos = [], 0
    for i, a in enumerate(rows):
        if not a["valid"] or not is_anchor(a):
            continue
        keys = [k for j, k in enumerate(rows) if j != i and k["valid"]]
        P = [k for k in keys if is_pos(a, k)]
        if not P:
            no_pos += 1
            continue
        A = [k for k in keys if is_pos(a, k) or not is_excluded(a, k)]
        lse = math.log(sum(math.exp(float(a["z"] @ k["z"]) / tau) for k in A))
        losses.append(sum(lse - float(a["z"] @ p["z"]) / tau for p in P) / len(P))
    return (sum(losses) / len(losses) if losses else 0.0), len(losses), no_pos


def make_batch(episodes, frames, mask=None, slots=None, cameras=None) -> dict:
    """A contract-valid batch from per-sample episode ids ``[B]`` (or ``[B, T]``) and frame indices ``[B, T]``."""
    frames = torch.as_tensor(frames, dtype=torch.int64)
    B, T = frames.shape
    episodes = torch.as_tensor(episodes, dtype=torch.int64)
    episode = episodes[:, None].expand(B, T).clone() if episodes.dim() == 1 else episodes
    cameras = cameras or ["front"]
    V = len(cameras)
    mask = torch.ones(B, T, V, dtype=torch.bool) if mask is None else torch.as_tensor(mask, dtype=torch.bool)
    ts = frames.double() / 10.0
    batch = {
        "frames": torch.zeros(B, T, V, 3, 4, 4, dtype=torch.uint8),
        "mask": mask,
        "episode": episode,
        "frame_index": frames,
        "timestamp": ts,
        "dt": (ts - ts[:, :1]).float(),
        "slots": slots or ["t"] + [f"s{i}" for i in range(1, T)],
        "cameras": cameras,
        "ego": {},
    }
    validate_batch(batch)
    return batch


@pytest.fixture
def naive():
    return naive_loss


@pytest.fixture
def batch_of():
    return make_batch
