"""Tests of the frame-order objective: contract, closed-form values, a naive reference, learning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ssltk
from ssltk_frame_order import FrameOrder


def make_batch(emb: torch.Tensor, mask: torch.Tensor | None = None) -> dict:
    """A batch following ssltk's contract for embeddings ``[B, 2, V, D]`` (tiny 8x8 frames)."""
    B, T, V, _ = emb.shape
    mask = torch.ones(B, T, V, dtype=torch.bool) if mask is None else mask
    frame_index = torch.tensor([[10, 12]] * B, dtype=torch.int64)
    return {
        "frames": torch.zeros(B, T, V, 3, 8, 8, dtype=torch.uint8),
        "mask": mask,
        "episode": torch.zeros(B, T, dtype=torch.int64),
        "frame_index": frame_index,
        "timestamp": frame_index.double() / 10.0,
        "dt": torch.tensor([[0.0, 0.2]] * B, dtype=torch.float32),
        "slots": ["t", "t+1..4f"],
        "cameras": [f"cam{i}" for i in range(V)],
        "ego": {},
    }


def test_contract_check():
    """ssltk's own contract check: finite scalar loss, gradients everywhere, views honoured."""
    from ssltk.testing import check_objective

    check_objective(FrameOrder)


def test_batch_helper_follows_the_contract():
    emb = torch.randn(3, 2, 2, 4)
    assert ssltk.validate_batch(make_batch(emb)) == (3, 2, 2)


def test_views_ask_for_one_partner_in_the_delta_range():
    req = FrameOrder.from_options(8, min_delta=2, max_delta=6, cameras="all").views()
    assert req.deltas == (ssltk.DeltaRange(2, 6),)
    assert req.cameras == "all" and not req.augmented_copy


@pytest.mark.parametrize(
    "options",
    [{"swap_prob": 1.5}, {"swap_prob": 0}, {"min_delta": 5, "max_delta": 2}, {"hidden_dim": 0}, {"cameras": "left"}],
)
def test_bad_options_are_usage_errors(options):
    with pytest.raises(ssltk.UsageError):
        FrameOrder.from_options(8, **options)


def test_unknown_option_suggests_the_right_one():
    with pytest.raises(ssltk.UnknownNameError, match="swap_prob"):
        FrameOrder.from_options(8, swap_prb=0.3)


def test_head_is_antisymmetric():
    torch.manual_seed(0)
    obj = FrameOrder(6, FrameOrder.Options(hidden_dim=16))
    a, b = torch.randn(5, 6), torch.randn(5, 6)
    torch.testing.assert_close(obj.order_logits(a, b), -obj.order_logits(b, a))


def test_identical_frames_give_ln2():
    """A static scene carries no arrow of time: logit 0, probability 1/2, loss ln 2 exactly."""
    torch.manual_seed(1)
    obj = FrameOrder(4, FrameOrder.Options(hidden_dim=8))
    same = torch.randn(7, 1, 3, 4).expand(7, 2, 3, 4)
    out = obj(same, make_batch(same))
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.metrics["pairs"] == 21


def test_pair_loss_matches_a_naive_reference():
    torch.manual_seed(2)
    obj = FrameOrder(5, FrameOrder.Options(hidden_dim=12))
    earlier, later = torch.randn(9, 5), torch.randn(9, 5)
    swap = torch.tensor([True, False, False, True, True, False, True, False, False])
    out = obj.pair_loss(earlier, later, swap)

    def f(x, y):  # the head written out: Linear, ReLU, Linear without bias
        w1, b1, w2 = obj.head[0].weight, obj.head[0].bias, obj.head[2].weight
        return (w2 @ torch.relu(w1 @ torch.cat([x, y]) + b1)).squeeze()

    total, correct = 0.0, 0
    for e, l, s in zip(earlier, later, swap):
        shown = (l, e) if s else (e, l)
        logit = f(*shown) - f(*reversed(shown))
        label = 0.0 if s else 1.0
        p = torch.sigmoid(logit)
        total += -(label * torch.log(p) + (1 - label) * torch.log(1 - p))
        correct += int((logit > 0).item() == (label == 1.0))
    torch.testing.assert_close(out.loss, total / 9)
    assert out.metrics["accuracy"] == pytest.approx(correct / 9)


def test_invalid_pairs_are_ignored():
    """Only pairs whose two frames are valid count; garbage elsewhere never reaches the loss."""
    torch.manual_seed(3)
    obj = FrameOrder(4, FrameOrder.Options(hidden_dim=8))
    emb = torch.randn(4, 2, 2, 4)
    mask = torch.ones(4, 2, 2, dtype=torch.bool)
    mask[0, 1, 0] = False  # partner missing
    mask[2, 0, 1] = False  # anchor missing
    emb[0, 1, 0] = float("nan")
    emb[2, 0, 1] = float("inf")
    emb.requires_grad_(True)

    torch.manual_seed(10)
    out = obj(emb, make_batch(emb, mask))
    assert torch.isfinite(out.loss) and out.metrics["pairs"] == 6
    out.loss.backward()
    assert emb.grad[0, :, 0].abs().sum() == 0 and emb.grad[2, :, 1].abs().sum() == 0
    assert emb.grad[1].abs().sum() > 0

    valid = (mask[:, 0] & mask[:, 1])
    torch.manual_seed(10)  # same coin flips, drawn for the 6 valid pairs
    swap = torch.rand(6) < 0.5
    ref = obj.pair_loss(emb.detach()[:, 0][valid], emb.detach()[:, 1][valid], swap)
    torch.testing.assert_close(out.loss.detach(), ref.loss)


def test_no_valid_pair_gives_a_finite_zero_loss():
    obj = FrameOrder(4, FrameOrder.Options(hidden_dim=8))
    emb = torch.randn(2, 2, 1, 4)
    mask = torch.zeros(2, 2, 1, dtype=torch.bool)
    out = obj(emb, make_batch(emb, mask))
    assert out.loss.item() == 0.0 and out.metrics["pairs"] == 0
    out.loss.backward()  # still connected to the graph


def test_wrong_number_of_slots_is_a_clear_error():
    obj = FrameOrder(4)
    emb = torch.randn(2, 3, 1, 4)
    with pytest.raises(ssltk.UsageError, match=r"\[B, 2, V, D\]"):
        obj(emb, {"mask": torch.ones(2, 3, 1, dtype=torch.bool)})


def test_swap_probability_sets_the_label_mix():
    torch.manual_seed(4)
    obj = FrameOrder(4, FrameOrder.Options(hidden_dim=8, swap_prob=0.2))
    same = torch.randn(400, 1, 1, 4).expand(400, 2, 1, 4)
    # identical frames: logit 0 -> predicted "swapped", so accuracy = fraction swapped ~ 0.2
    acc = obj(same, make_batch(same)).metrics["accuracy"]
    assert 0.12 < acc < 0.28


def test_learns_the_arrow_of_time():
    """Embeddings drift along a fixed direction over time: the head must learn to read it."""
    torch.manual_seed(5)
    D = 8
    obj = FrameOrder(D, FrameOrder.Options(hidden_dim=16))
    drift = F.normalize(torch.randn(D), dim=0)
    opt = torch.optim.Adam(obj.parameters(), lr=1e-2)
    for _ in range(150):
        start = torch.randn(64, 1, 1, D)
        emb = torch.cat([start, start + 0.5 * drift.view(1, 1, 1, D)], dim=1)
        out = obj(emb, make_batch(emb))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.metrics["accuracy"] > 0.9
    assert out.loss.item() < 0.3
