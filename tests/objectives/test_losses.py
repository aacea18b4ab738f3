"""The masked-InfoNCE kernel: naive loop reference, closed forms, gradients, masking, statistics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssltk import UsageError
from ssltk.losses import STAT_NAMES, masked_infonce


def naive_infonce(q, k, pos, excl, a_valid, k_valid, self_idx, tau):
    """Python loops over anchors and keys; returns (mean loss, per-anchor dict)."""
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    per = {}
    for i in range(q.shape[0]):
        if not a_valid[i]:
            continue
        keys = [j for j in range(k.shape[0]) if k_valid[j] and j != self_idx[i]]
        P = [j for j in keys if pos[i, j]]
        if not P:
            continue
        A = [j for j in keys if pos[i, j] or not excl[i, j]]
        s = {j: float(q[i] @ k[j]) / tau for j in A}
        lse = math.log(sum(math.exp(v) for v in s.values()))
        per[i] = sum(lse - s[p] for p in P) / len(P)
    mean = sum(per.values()) / len(per) if per else 0.0
    return mean, per


def random_case(n, m, d, seed, shared_keys):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, d, generator=g, dtype=torch.float64)
    k = q if shared_keys else torch.randn(m, d, generator=g, dtype=torch.float64)
    m = n if shared_keys else m
    pos = torch.rand(n, m, generator=g) < 0.2
    excl = torch.rand(n, m, generator=g) < 0.3
    a_valid = torch.rand(n, generator=g) > 0.2
    k_valid = a_valid if shared_keys else torch.rand(m, generator=g) > 0.2
    self_idx = torch.arange(n) if shared_keys else torch.randint(-1, m, (n,), generator=g)
    return q, k, pos, excl, a_valid, k_valid, self_idx


@pytest.mark.parametrize("n,m,d", [(6, 6, 3), (9, 9, 5), (5, 11, 4)])
@pytest.mark.parametrize("tau", [0.07, 0.5, 2.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_naive_loop_reference(n, m, d, tau, seed):
    shared = n == m
    q, k, pos, excl, av, kv, si = random_case(n, m, d, seed, shared)
    out = masked_infonce(
        q, pos, keys=None if shared else k, anchor_valid=av, key_valid=None if shared else kv,
        exclude=excl, self_index=si, temperature=tau,
    )
    want, per = naive_infonce(q, k, pos, excl, av, kv, si, tau)
    assert out.loss.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert int(out.count) == len(per)
    for i in range(n):
        assert out.per_anchor[i].item() == pytest.approx(per.get(i, 0.0), rel=1e-9, abs=1e-12)
    assert out.active.tolist() == [i in per for i in range(n)]


def test_single_positive_equals_cross_entropy():
    """One positive and no exclusions: NT-Xent = cross-entropy with the self-similarity removed."""
    torch.manual_seed(0)
    n, tau = 8, 0.2
    z = torch.randn(2 * n, 5)
    partner = torch.arange(2 * n).view(2, n).flip(0).reshape(-1)  # i <-> i + n
    pos = F.one_hot(partner, 2 * n).bool()
    zn = F.normalize(z, dim=-1)
    logits = (zn @ zn.T / tau).fill_diagonal_(float("-inf"))
    ref = F.cross_entropy(logits, partner)
    got = masked_infonce(z, pos, temperature=tau).loss
    torch.testing.assert_close(got, ref)


def test_identical_embeddings_give_log_n_minus_1():
    n = 10
    z = torch.ones(n, 4)
    pos = torch.zeros(n, n, dtype=torch.bool)
    pos[torch.arange(n), (torch.arange(n) + 1) % n] = True
    out = masked_infonce(z, pos, temperature=0.3)
    assert out.loss.item() == pytest.approx(math.log(n - 1), rel=1e-6)


@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_orthogonal_groups_closed_form(tau):
    """Groups of g identical one-hot rows, groups orthogonal: -1/tau + log((g-1) e^{1/tau} + (N-g))."""
    groups, g = 4, 3
    z = torch.eye(groups).repeat_interleave(g, dim=0)  # [12, 4]
    label = torch.arange(groups).repeat_interleave(g)
    pos = label[:, None] == label[None, :]
    out = masked_infonce(z, pos, temperature=tau)
    n = groups * g
    want = -1 / tau + math.log((g - 1) * math.exp(1 / tau) + (n - g))
    assert out.loss.item() == pytest.approx(want, rel=1e-6)
    s = out.stats
    assert s["pos_cos"] == pytest.approx(1.0) and s["neg_cos"] == pytest.approx(0.0, abs=1e-7)
    assert s["pos_per_anchor"] == g - 1 and s["neg_per_anchor"] == n - g
    assert s["eff_negatives"] == pytest.approx(n - g, rel=1e-6)  # equal logits: uniform over negatives
    assert s["top1"] == 1.0 and s["anchors"] == n and s["anchors_no_pos"] == 0
    assert s["emb_std"] > 0


def test_pairs_of_orthogonal_one_hots_closed_form():
    """SimCLR pairs, pairs orthogonal to each other: log(1 + (2n-2) e^{-1/tau})."""
    n, tau = 5, 0.5
    z = torch.eye(n).repeat(2, 1)
    partner = torch.arange(2 * n).view(2, n).flip(0).reshape(-1)
    out = masked_infonce(z, F.one_hot(partner, 2 * n).bool(), temperature=tau)
    assert out.loss.item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-6)


def test_exclusion_removes_keys_from_denominator_but_keeps_positives():
    torch.manual_seed(3)
    z = torch.randn(6, 4, requires_grad=True)
    pos = torch.zeros(6, 6, dtype=torch.bool)
    pos[0, 1] = True
    excl = torch.zeros(6, 6, dtype=torch.bool)
    excl[0, 1] = excl[0, 2] = True  # the positive stays, key 2 leaves the denominator
    out = masked_infonce(z, pos, exclude=excl, temperature=0.1)
    zn = F.normalize(z.detach(), dim=-1)
    s = zn[0] @ zn.T / 0.1
    want = -s[1] + torch.logsumexp(s[[1, 3, 4, 5]], 0)
    assert out.per_anchor[0].item() == pytest.approx(want.item(), rel=1e-6)
    out.loss.backward()
    assert z.grad[2].abs().sum() == 0  # excluded and not a positive of anyone: no gradient


def test_no_nan_when_rows_are_masked_or_lack_positives():
    z = torch.randn(6, 4)
    z[4:] = 0.0  # invalid rows are zeros
    z.requires_grad_(True)
    valid = torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool)
    pos = torch.zeros(6, 6, dtype=torch.bool)
    pos[0, 1] = pos[1, 0] = True
    pos[2, 4] = True  # positive is invalid -> anchor 2 has none
    excl = torch.ones(6, 6, dtype=torch.bool)  # excludes every negative: denominators hold only positives
    out = masked_infonce(z, pos, anchor_valid=valid, exclude=excl, temperature=0.05)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(z.grad).all()
    assert out.loss.item() == pytest.approx(0.0, abs=1e-6)  # only the positive in the denominator
    assert out.stats["anchors"] == 2 and out.stats["anchors_no_pos"] == 2
    assert all(math.isfinite(v) for v in out.stats.values())


def test_everything_masked_gives_zero_loss_and_zero_grads():
    z = torch.zeros(5, 3, requires_grad=True)
    pos = torch.ones(5, 5, dtype=torch.bool)
    out = masked_infonce(z, pos, anchor_valid=torch.zeros(5, dtype=torch.bool), temperature=0.1)
    out.loss.backward()
    assert out.loss.item() == 0.0 and out.loss.requires_grad
    assert torch.equal(z.grad, torch.zeros_like(z))
    assert out.stats["anchors"] == 0 and all(math.isfinite(v) for v in out.stats.values())


def test_no_positive_anywhere_is_zero_not_nan():
    z = torch.randn(4, 3, requires_grad=True)
    out = masked_infonce(z, torch.zeros(4, 4, dtype=torch.bool), temperature=0.1)
    out.loss.backward()
    assert out.loss.item() == 0.0 and torch.isfinite(z.grad).all()
    assert out.stats["anchors_no_pos"] == 4


def test_self_is_never_a_positive_or_negative():
    z = torch.randn(4, 3)
    eye = torch.eye(4, dtype=torch.bool)
    assert masked_infonce(z, eye, temperature=0.1).count.item() == 0
    pos = eye.roll(1, dims=1)
    a = masked_infonce(z, pos, temperature=0.1).loss
    b = masked_infonce(z, pos | eye, temperature=0.1).loss
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck(shared):
    q, k, pos, excl, av, kv, si = random_case(5, 7, 3, seed=4, shared_keys=shared)
    pos[0, 1 if shared else 0] = True  # at least one positive
    av[0] = kv[1 if shared else 0] = True
    q.requires_grad_(True)
    if shared:
        fn = lambda q: masked_infonce(  # noqa: E731
            q, pos, anchor_valid=av, exclude=excl, temperature=0.3, stats=False, inplace_backward=False
        ).loss
        assert torch.autograd.gradcheck(fn, (q,))
    else:
        k.requires_grad_(True)
        si[0] = -1

        def fn(q, k):
            return masked_infonce(
                q, pos, keys=k, anchor_valid=av, key_valid=kv, exclude=excl, self_index=si, temperature=0.3,
                stats=False, inplace_backward=False,
            ).loss

        assert torch.autograd.gradcheck(fn, (q, k))


@pytest.mark.parametrize("tau", [0.0, -0.1, float("nan"), float("inf"), 1e-5])
def test_bad_temperature_is_a_usage_error(tau):
    with pytest.raises(UsageError, match="temperature"):
        masked_infonce(torch.randn(3, 2), torch.eye(3, dtype=torch.bool), temperature=tau)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="positives must be"):
        masked_infonce(torch.randn(3, 2), torch.zeros(3, 4, dtype=torch.bool))


def test_stats_are_floats_and_top1_counts_hits():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    pos = torch.tensor([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], dtype=torch.bool)
    s = masked_infonce(z, pos, temperature=0.1).stats
    assert set(s) == set(STAT_NAMES) and all(type(v) is float for v in s.values())
    assert s["top1"] == pytest.approx(0.75)  # anchor 0's nearest key is row 1, not its positive 2


def test_collapse_shows_in_emb_std():
    collapsed = torch.ones(8, 4) + 1e-4 * torch.randn(8, 4)
    spread = torch.randn(8, 4)
    pos = torch.eye(8, dtype=torch.bool).roll(1, 1)
    assert masked_infonce(collapsed, pos).stats["emb_std"] < 1e-3
    assert masked_infonce(spread, pos).stats["emb_std"] > 0.2


def test_half_precision_inputs_are_scored_in_float32():
    torch.manual_seed(5)
    z = torch.randn(8, 4)
    pos = torch.eye(8, dtype=torch.bool).roll(1, 1)
    ref = masked_infonce(z, pos, temperature=0.05).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = masked_infonce(z.bfloat16(), pos, temperature=0.05).loss
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)


def test_inplace_backward_gives_the_same_gradients_and_refuses_a_second_pass():
    q, k, pos, excl, av, kv, si = random_case(7, 9, 3, seed=6, shared_keys=False)
    grads = []
    for inplace in (False, True):
        qq, kk = q.clone().requires_grad_(True), k.clone().requires_grad_(True)
        loss = masked_infonce(qq, pos, keys=kk, anchor_valid=av, key_valid=kv, exclude=excl, self_index=si,
                              temperature=0.2, inplace_backward=inplace).loss
        loss.backward(retain_graph=True)
        grads.append((qq.grad.clone(), kk.grad.clone()))
        if inplace:
            with pytest.raises(RuntimeError, match="inplace"):
                loss.backward()
        else:
            loss.backward()  # allowed: the softmax buffer is left intact
    torch.testing.assert_close(grads[0], grads[1])
