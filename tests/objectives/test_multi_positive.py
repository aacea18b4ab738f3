"""multi-positive (SupCon L_out): loop reference, reduction to NT-Xent, anchors without positives."""

from __future__ import annotations

import math

import pytest
import torch

from ssltk import DeltaRange, UsageError
from ssltk_builtins.multi_positive import MultiPositive
from ssltk_builtins.per_frame import PerFrame

CAMS = ["front", "left"]


def test_views_request_a_clip_from_every_camera():
    req = MultiPositive.from_options(8, clip=4, stride=2).views()
    assert req.deltas == (DeltaRange(2, 2), DeltaRange(4, 4), DeltaRange(6, 6)) and req.cameras == "all"
    assert MultiPositive.from_options(8, clip=1).views().deltas == ()


@pytest.mark.parametrize("window,guard", [(0, 0), (2, 0), (2, 5), (4, 0)])
def test_matches_loop_reference(naive, batch_of, window, guard):
    episodes = [1, 1, 2, 3]
    frames = [[0, 2, 4], [5, 7, 9], [10, 12, 14], [98, 100, 102]]
    mask = torch.ones(4, 3, 2, dtype=torch.bool)
    mask[3, 1:, :] = False  # episode end: sample 3 keeps only its first timestep
    mask[2, 0, 1] = False
    batch = batch_of(episodes, frames, mask, slots=["t", "t+2f", "t+4f"], cameras=CAMS)
    emb = torch.randn(4, 3, 2, 5, generator=torch.Generator().manual_seed(window + guard)) * mask[..., None]
    obj = MultiPositive.from_options(5, proj_dim=0, clip=3, stride=2, window=window, guard=guard, temperature=0.3)
    out = obj(emb, batch)

    def pos(a, k):
        return a["episode"] == k["episode"] and abs(a["frame"] - k["frame"]) <= window

    def excluded(a, k):
        return a["episode"] == k["episode"] and abs(a["frame"] - k["frame"]) <= guard

    want, n, no_pos = naive(emb, batch, 0.3, pos, excluded)
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert (out.metrics["anchors"], out.metrics["anchors_no_pos"]) == (n, no_pos)


def test_equals_two_view_nt_xent_when_the_mask_is_pairs(batch_of):
    """clip=2, window=stride, one camera, one sample per episode: each row's only positive is its partner."""
    B = 6
    batch = batch_of(list(range(B)), [[3 * b, 3 * b + 5] for b in range(B)], slots=["t", "t+5f"])
    emb = torch.randn(B, 2, 1, 8, generator=torch.Generator().manual_seed(7))
    torch.manual_seed(0)
    supcon = MultiPositive.from_options(8, clip=2, stride=5, window=5, cameras="anchor", proj_dim=4, hidden_dim=6)
    torch.manual_seed(0)
    simclr = PerFrame.from_options(8, proj_dim=4, hidden_dim=6)
    torch.testing.assert_close(supcon(emb, batch).loss, simclr(emb, batch).loss)
    assert supcon(emb, batch).metrics["pos_per_anchor"] == 1.0


def test_anchors_without_positive_are_counted_never_nan(batch_of):
    mask = torch.zeros(3, 2, 2, dtype=torch.bool)
    mask[0, 0, 0] = True  # alone in its episode and clip
    mask[1, :, 0] = True  # a valid pair
    batch = batch_of([1, 2, 3], [[0, 2], [0, 2], [0, 2]], mask, slots=["t", "t+2f"], cameras=CAMS)
    emb = (torch.randn(3, 2, 2, 4) * mask[..., None]).requires_grad_(True)
    out = MultiPositive.from_options(4, clip=2, stride=2, window=2)(emb, batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(emb.grad).all()
    assert out.metrics["anchors"] == 2 and out.metrics["anchors_no_pos"] == 1
    assert all(math.isfinite(v) for v in out.metrics.values())


def test_all_alone_gives_zero_loss(batch_of):
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[:, 0, 0] = True
    batch = batch_of([1, 2], [[0, 2], [0, 2]], mask, slots=["t", "t+2f"], cameras=CAMS)
    emb = (torch.randn(2, 2, 2, 4) * mask[..., None]).requires_grad_(True)
    out = MultiPositive.from_options(4, clip=2, stride=2, window=2)(emb, batch)
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.metrics["anchors_no_pos"] == 2 and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("opts", [{"clip": 0}, {"stride": 0}, {"window": -1}, {"guard": -1}, {"temperature": -1.0}])
def test_bad_options(opts):
    with pytest.raises(UsageError):
        MultiPositive.from_options(8, **opts)
