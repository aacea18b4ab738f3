"""multi-camera: loop reference (multi-positive across cameras), closed form, options."""

from __future__ import annotations

import math

import pytest
import torch

from ssltk import UsageError, ViewRequest
from ssltk_builtins.multi_camera import MultiCamera

CAMS = ["front", "left", "right"]


def same_timestep(a, k):
    return a["episode"] == k["episode"] and a["frame"] == k["frame"]


def test_views_ask_for_every_camera_at_t():
    assert MultiCamera.from_options(8).views() == ViewRequest(cameras="all")
    assert MultiCamera.from_options(8, cameras="front,left").views().cameras == ("front", "left")


@pytest.mark.parametrize("guard", [0, 3])
def test_matches_loop_reference(naive, batch_of, guard):
    # samples 0 and 1 are the same timestep (duplicates are positives too); 2 is 2 frames later
    episodes, frames = [4, 4, 4, 8, 8], [[20], [20], [22], [20], [50]]
    mask = torch.ones(5, 1, 3, dtype=torch.bool)
    mask[2, 0, 1:] = False  # sample 2: only the front camera -> no positive
    mask[3, 0, 0] = False
    batch = batch_of(episodes, frames, mask, cameras=CAMS)
    emb = torch.randn(5, 1, 3, 6, generator=torch.Generator().manual_seed(guard)) * mask[..., None]
    out = MultiCamera.from_options(6, proj_dim=0, guard=guard, temperature=0.2)(emb, batch)

    def excluded(a, k):
        return a["episode"] == k["episode"] and abs(a["frame"] - k["frame"]) <= guard

    want, n, no_pos = naive(emb, batch, 0.2, same_timestep, excluded)
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert (out.metrics["anchors"], out.metrics["anchors_no_pos"]) == (n, no_pos) == (11, 1)


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_orthogonal_timesteps_closed_form(batch_of, tau):
    """All cameras agree within a timestep, timesteps orthogonal: -1/tau + log((V-1) e^{1/tau} + N - V)."""
    B, V = 4, 3
    batch = batch_of(list(range(B)), [[0]] * B, cameras=CAMS)
    emb = torch.eye(B)[:, None, None, :].expand(B, 1, V, B)
    out = MultiCamera.from_options(B, proj_dim=0, temperature=tau)(emb, batch)
    n = B * V
    assert out.loss.item() == pytest.approx(-1 / tau + math.log((V - 1) * math.exp(1 / tau) + n - V), rel=1e-6)
    assert out.metrics["top1"] == 1.0 and out.metrics["pos_per_anchor"] == V - 1


@pytest.mark.parametrize("opts", [{"cameras": "anchor"}, {"cameras": "front"}, {"guard": -2}, {"temperature": 0}])
def test_bad_options(opts):
    with pytest.raises(UsageError):
        MultiCamera.from_options(8, **opts)
