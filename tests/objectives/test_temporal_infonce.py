"""temporal-infonce: loop reference with the TCN guard window, one-way form, options."""

from __future__ import annotations

import pytest
import torch

from ssltk import DeltaRange, UsageError
from ssltk.contrastive import Rows
from ssltk.losses import masked_infonce
from ssltk_builtins.per_frame import PerFrame
from ssltk_builtins.temporal_infonce import TemporalInfoNCE


def pair(a, k):
    return a["b"] == k["b"] and a["v"] == k["v"] and a["t"] != k["t"]


def guard_rule(rows_by_key, g):
    """Same episode and within g frames of the anchor or of the anchor's positive."""

    def excluded(a, k):
        partner = rows_by_key[(a["b"], 1 - a["t"], a["v"])]
        return a["episode"] == k["episode"] and min(abs(k["frame"] - a["frame"]), abs(k["frame"] - partner["frame"])) <= g

    return excluded


def index_rows(batch):
    B, T = batch["frame_index"].shape
    return {
        (b, t, v): {"frame": int(batch["frame_index"][b, t])}
        for b in range(B) for t in range(T) for v in range(len(batch["cameras"]))
    }


# Samples 0-3 share episode 7 at nearby times; 4-5 are episode 9; sample 5 lost its partner.
EPISODES = [7, 7, 7, 7, 9, 9]
FRAMES = [[10, 14], [12, 16], [30, 33], [60, 62], [5, 9], [40, 44]]


def batch_and_emb(batch_of, seed=0, D=6):
    mask = torch.ones(6, 2, 1, dtype=torch.bool)
    mask[5, 1, 0] = False
    batch = batch_of(EPISODES, FRAMES, mask, slots=["t", "t+2..10f"])
    emb = torch.randn(6, 2, 1, D, generator=torch.Generator().manual_seed(seed)) * mask[..., None]
    return batch, emb


def test_default_views_and_seconds_ranges():
    req = TemporalInfoNCE.from_options(8).views()
    assert req.cameras == "anchor" and req.deltas == (DeltaRange(2, 10),) and not req.augmented_copy
    req = TemporalInfoNCE.from_options(8, dt="0.2s-1s", camera="left").views()
    assert req.deltas == (DeltaRange(0.2, 1.0, "seconds"),) and req.cameras == ("left",)


@pytest.mark.parametrize("guard", [0, 2, 5, 40])
@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_matches_loop_reference_with_guard(naive, batch_of, guard, tau):
    batch, emb = batch_and_emb(batch_of)
    obj = TemporalInfoNCE.from_options(6, proj_dim=0, guard=guard, temperature=tau)
    out = obj(emb, batch)
    want, n, no_pos = naive(emb, batch, tau, pair, guard_rule(index_rows(batch), guard))
    assert out.loss.item() == pytest.approx(want, rel=1e-5)
    assert (out.metrics["anchors"], out.metrics["anchors_no_pos"]) == (n, no_pos) == (10, 1)


def test_guard_excludes_near_frames_and_keeps_far_ones_as_negatives(batch_of):
    """Sample 1 (frames 12/16) is within 2 frames of sample 0's pair (10/14): not a negative.
    Sample 3 (frames 60/62) is the same episode but far: a hard negative."""
    batch, emb = batch_and_emb(batch_of)
    obj = TemporalInfoNCE.from_options(6, proj_dim=0, guard=2)

    def per_anchor(e):
        rows = Rows.from_batch(batch, e.device)
        m = obj.masks(rows, rows)
        return masked_infonce(e.reshape(12, 6), m.positives, anchor_valid=rows.valid, exclude=m.exclude).per_anchor

    base = per_anchor(emb)
    near, far = emb.clone(), emb.clone()
    near[1, 0, 0] = emb[0, 0, 0]  # sample 1, slot t (frame 12): |12-10| <= 2 -> not in anchor 0's denominator
    far[3, 0, 0] = emb[0, 0, 0]  # sample 3 (frame 60): same episode, far -> a (very hard) negative
    assert per_anchor(near)[0].item() == pytest.approx(base[0].item(), rel=1e-6)
    assert per_anchor(far)[0].item() > base[0].item() + 0.5
    # and the objective's loss sees the same difference
    assert obj(far, batch).loss.item() > obj(emb, batch).loss.item()


def test_guard_zero_still_keeps_other_samples_as_negatives(batch_of):
    batch, emb = batch_and_emb(batch_of)
    out = TemporalInfoNCE.from_options(6, proj_dim=0, guard=0)(emb, batch)
    assert out.metrics["neg_per_anchor"] == pytest.approx(9.0)  # 11 valid rows - self - positive; no frame collisions


def test_one_way_uses_only_t_rows_as_anchors(naive, batch_of):
    batch, emb = batch_and_emb(batch_of, seed=3)
    out = TemporalInfoNCE.from_options(6, proj_dim=0, guard=2, symmetric=False)(emb, batch)
    want, n, _ = naive(emb, batch, 0.1, pair, guard_rule(index_rows(batch), 2), is_anchor=lambda a: a["t"] == 0)
    assert out.loss.item() == pytest.approx(want, rel=1e-5) and out.metrics["anchors"] == n == 5


def test_symmetric_form_equals_nt_xent_on_pairs(batch_of):
    """Distinct episodes (nothing guarded): temporal-infonce is exactly SimCLR's NT-Xent on (t, t+Δt)."""
    torch.manual_seed(4)
    B = 5
    batch = batch_of(list(range(B)), [[3, 7]] * B, slots=["t", "t+4f"])
    emb = torch.randn(B, 2, 1, 8)
    torch.manual_seed(0)
    temporal = TemporalInfoNCE.from_options(8, proj_dim=4, hidden_dim=6, guard=3)
    torch.manual_seed(0)
    simclr = PerFrame.from_options(8, proj_dim=4, hidden_dim=6)
    torch.testing.assert_close(temporal(emb, batch).loss, simclr(emb, batch).loss)


@pytest.mark.parametrize(
    "opts",
    [{"temperature": 0.0}, {"temperature": -0.5}, {"dt": "ten"}, {"dt": "5-2"}, {"guard": -1}, {"dt": "1.5"}],
)
def test_bad_options_are_usage_errors(opts):
    with pytest.raises(UsageError):
        TemporalInfoNCE.from_options(8, **opts)


def test_unknown_option_suggests_close_match():
    from ssltk import UnknownNameError

    with pytest.raises(UnknownNameError, match="temperature"):
        TemporalInfoNCE.from_options(8, temprature=0.1)
