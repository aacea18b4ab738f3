"""per-frame (SimCLR NT-Xent): reference loops, the standard cross-entropy form, closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssltk import UsageError, ViewRequest
from ssltk_builtins.per_frame import PerFrame


def same_frame_other_copy(a, k):
    return a["b"] == k["b"] and a["v"] == k["v"] and a["t"] != k["t"]


def test_views_ask_for_an_augmented_copy_of_the_anchor_camera():
    assert PerFrame.from_options(8).views() == ViewRequest(cameras="anchor", augmented_copy=True)
    assert PerFrame.from_options(8, cameras="all").views().cameras == "all"
    assert PerFrame.from_options(8, cameras="front,left").views().cameras == ("front", "left")


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_matches_loop_reference_with_missing_frames(naive, batch_of, tau):
    torch.manual_seed(0)
    B = 6
    mask = torch.ones(B, 2, 1, dtype=torch.bool)
    mask[1, 1, 0] = mask[4, 0, 0] = False
    batch = batch_of(list(range(B)), [[10 * b, 10 * b] for b in range(B)], mask, slots=["t", "t:aug"])
    emb = torch.randn(B, 2, 1, 8) * mask[..., None]
    obj = PerFrame.from_options(8, proj_dim=0, temperature=tau)
    out = obj(emb, batch)
    want, n_anchors, no_pos = naive(emb, batch, tau, same_frame_other_copy)
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert out.metrics["anchors"] == n_anchors == 8 and out.metrics["anchors_no_pos"] == no_pos == 2


def test_equals_standard_nt_xent_through_the_head(batch_of):
    """The usual NT-Xent: cross-entropy over [2N, 2N] similarities with the diagonal removed."""
    torch.manual_seed(1)
    B, tau = 5, 0.2
    batch = batch_of(list(range(B)), [[0, 0]] * B, slots=["t", "t:aug"])
    obj = PerFrame.from_options(8, temperature=tau, proj_dim=6, hidden_dim=10)
    emb = torch.randn(B, 2, 1, 8)
    z = F.normalize(obj.head(torch.cat([emb[:, 0, 0], emb[:, 1, 0]])), dim=-1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(B, 2 * B), torch.arange(B)])
    want = F.cross_entropy(logits, target)
    torch.testing.assert_close(obj(emb, batch).loss, want, rtol=1e-5, atol=1e-6)


def test_identical_embeddings_give_log_2n_minus_1(batch_of):
    B = 4
    batch = batch_of(list(range(B)), [[0, 0]] * B, slots=["t", "t:aug"])
    out = PerFrame.from_options(3, proj_dim=0)(torch.ones(B, 2, 1, 3), batch)
    assert out.loss.item() == pytest.approx(math.log(2 * B - 1), rel=1e-6)


def test_each_camera_is_its_own_view(naive, batch_of):
    torch.manual_seed(2)
    B = 3
    batch = batch_of(list(range(B)), [[5, 5]] * B, slots=["t", "t:aug"], cameras=["front", "left"])
    emb = torch.randn(B, 2, 2, 4)
    out = PerFrame.from_options(4, proj_dim=0, cameras="all", guard=-1)(emb, batch)
    want, n, _ = naive(emb, batch, 0.1, same_frame_other_copy)
    assert out.loss.item() == pytest.approx(want, rel=1e-5) and n == 12
    assert out.metrics["pos_per_anchor"] == 1.0 and out.metrics["neg_per_anchor"] == 10.0
    # by default the other camera's view of the same moment is not a negative either
    out = PerFrame.from_options(4, proj_dim=0, cameras="all")(emb, batch)
    assert out.metrics["neg_per_anchor"] == 8.0


@pytest.mark.parametrize("opts", [{"temperature": 0}, {"temperature": -1}, {"proj_dim": -1}, {"cameras": " "}, {"guard": -2}])
def test_bad_options(opts):
    with pytest.raises(UsageError):
        PerFrame.from_options(8, **opts)


def test_copies_of_the_same_frame_in_other_samples_are_not_negatives(naive, batch_of):
    torch.manual_seed(3)
    B = 4  # samples 0 and 1 are the same frame of episode 5; 2 is one frame later
    batch = batch_of([5, 5, 5, 6], [[10, 10], [10, 10], [11, 11], [10, 10]], slots=["t", "t:aug"])
    emb = torch.randn(B, 2, 1, 4)

    def duplicate(a, k):
        return a["episode"] == k["episode"] and abs(a["frame"] - k["frame"]) <= 0

    out = PerFrame.from_options(4, proj_dim=0)(emb, batch)
    want, _, _ = naive(emb, batch, 0.1, same_frame_other_copy, duplicate)
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert out.metrics["neg_per_anchor"] == pytest.approx((4 * 4 + 4 * 6) / 8)  # rows of samples 0/1 lose 2 keys
    textbook = PerFrame.from_options(4, proj_dim=0, guard=-1)(emb, batch)
    want, _, _ = naive(emb, batch, 0.1, same_frame_other_copy)
    assert textbook.loss.item() == pytest.approx(want, rel=1e-5) and textbook.metrics["neg_per_anchor"] == 6.0
