"""The building blocks plugin objectives import from ``ssltk`` (one process; DDP in test_public_helpers_dist.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import ssltk

PUBLIC = (
    "ContrastiveObjective", "ContrastiveOptions", "Masks", "Rows", "near", "same", "ProjectionHead",
    "InfoNCEOutput", "masked_infonce", "collapse_stats", "world", "gather_with_grad", "gather_nograd",
    "all_reduce_sum", "ddp_mean", "EMA", "TargetRequest", "Objective", "LossOutput", "Backbone", "BackboneFamily",
)


@pytest.mark.parametrize("name", PUBLIC)
def test_importable_from_the_top_level(name):
    assert name in ssltk.__all__ and name in dir(ssltk)
    obj = getattr(ssltk, name)
    assert obj is not None
    exec(f"from ssltk import {name}", {})


def test_top_level_names_are_the_core_objects():
    from ssltk import contrastive, ema, losses

    assert ssltk.masked_infonce is losses.masked_infonce and ssltk.gather_with_grad is losses.gather_with_grad
    assert ssltk.ContrastiveObjective is contrastive.ContrastiveObjective and ssltk.EMA is ema.EMA


def test_one_process_helpers_are_identities():
    x = torch.randn(4, 3, requires_grad=True)
    assert ssltk.world() == (0, 1)
    assert ssltk.gather_with_grad(x) == (x, 0)
    assert ssltk.gather_nograd(x)[0] is x
    assert ssltk.all_reduce_sum(x) is x


def test_ddp_mean_is_the_mean_with_one_process():
    v = torch.tensor([1.0, 2.0, 6.0], requires_grad=True)
    out = ssltk.ddp_mean(v)
    assert out.item() == pytest.approx(3.0)
    out.backward()
    torch.testing.assert_close(v.grad, torch.full((3,), 1 / 3))


def test_ddp_mean_of_nothing_is_a_connected_zero():
    v = torch.zeros(0, requires_grad=True)
    out = ssltk.ddp_mean(v)
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert v.grad.shape == (0,)


def test_ddp_mean_flattens_and_keeps_dtype():
    v = torch.ones(2, 3, dtype=torch.float64)
    out = ssltk.ddp_mean(v)
    assert out.dtype == torch.float64 and out.item() == 1.0


def test_collapse_stats_closed_forms():
    # Every row the same: no spread, one direction.
    same = torch.ones(10, 4)
    s = ssltk.collapse_stats(same)
    assert s["emb_std"] == pytest.approx(0.0, abs=1e-6)
    assert s["effective_rank"] == pytest.approx(1.0, abs=1e-4)
    # Rows +-e_k: k directions with equal singular values -> effective rank k.
    eye = torch.eye(4)
    s = ssltk.collapse_stats(torch.cat([eye, -eye]))
    assert s["effective_rank"] == pytest.approx(4.0, rel=1e-5)
    # Normalised rows +-e_k: each column takes +-1 once and 0 six times: std = sqrt(2/7).
    assert s["emb_std"] == pytest.approx(math.sqrt(2 / 7), rel=1e-5)
    assert all(isinstance(v, float) for v in s.values())


def test_collapse_stats_matches_a_naive_reference():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(30, 6, generator=g) @ torch.randn(6, 6, generator=g)
    s = ssltk.collapse_stats(z)
    zn = F.normalize(z, dim=1)
    mean = zn.mean(0)
    std = [math.sqrt(sum((zn[i, j] - mean[j]).item() ** 2 for i in range(30)) / 29) for j in range(6)]
    assert s["emb_std"] == pytest.approx(sum(std) / 6, rel=1e-5)
    sv = torch.linalg.svdvals(z.double())
    p = sv / sv.sum()
    assert s["effective_rank"] == pytest.approx(math.exp(-sum(float(q * q.log()) for q in p)), rel=1e-5)


def test_collapse_stats_needs_two_rows():
    s = ssltk.collapse_stats(torch.randn(1, 5))
    assert math.isnan(s["emb_std"]) and math.isnan(s["effective_rank"])


def test_top_level_masked_infonce_is_nt_xent():
    """Through the public name: SimCLR pairs equal cross-entropy over the similarities."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 5, generator=g)
    pos = torch.zeros(6, 6, dtype=torch.bool)
    for i in range(3):
        pos[2 * i, 2 * i + 1] = pos[2 * i + 1, 2 * i] = True
    out = ssltk.masked_infonce(z, pos, temperature=0.5)
    assert isinstance(out, ssltk.InfoNCEOutput)
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T / 0.5).masked_fill(torch.eye(6, dtype=torch.bool), float("-inf"))
    target = torch.tensor([1, 0, 3, 2, 5, 4])
    torch.testing.assert_close(out.loss, F.cross_entropy(logits, target))
