"""future-prediction: loop reference, closed forms of the collapse guards, telemetry, views, no gradient into the target."""

from __future__ import annotations

import math

import pytest
import torch

import ssltk
from ssltk.testing import check_objective, fake_batch_for
from ssltk_builtins.future_prediction import (
    EPS,
    FuturePrediction,
    covariance_term,
    effective_rank,
    variance_term,
)

D = 12
OPTS = dict(context=3, stride=1, dt="1-3", proj_dim=8, hidden_dim=16, pred_hidden=16, var_target=2.0, cov_weight=0.5)


def _inputs(obj, seed=0, missing=0.15, B=12, cameras=("front", "rear")):
    batch = fake_batch_for(obj, B, cameras, seed=seed, missing=missing, episode_length=20)
    g = torch.Generator().manual_seed(seed)
    mask = batch["mask"][..., None]
    emb = torch.randn(*batch["mask"].shape, D, generator=g) * mask
    target = torch.randn(batch["mask"].shape[0], 1, batch["mask"].shape[2], D, generator=g) * mask[:, -1:]
    return emb, batch, target


def _naive_var(rows: list[list[float]], gamma: float) -> float:
    n, d = len(rows), len(rows[0])
    total = 0.0
    for j in range(d):
        mu = sum(r[j] for r in rows) / n
        var = sum((r[j] - mu) ** 2 for r in rows) / (n - 1)
        total += max(0.0, gamma - math.sqrt(var + EPS))
    return total / d


def _naive_cov(rows: list[list[float]]) -> float:
    n, d = len(rows), len(rows[0])
    mu = [sum(r[j] for r in rows) / n for j in range(d)]
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                c = sum((r[i] - mu[i]) * (r[j] - mu[j]) for r in rows) / (n - 1)
                total += c * c
    return total / d


def naive_loss(obj: FuturePrediction, emb, batch, target) -> tuple[float, int]:
    """Row by row: which (sample, camera) rows are complete, the predictor's input, MSE, VICReg terms."""
    o = obj.options
    k = o.context
    B, T, V, _ = emb.shape
    z_all, preds, targets = [], [], []
    with torch.no_grad():
        for b in range(B):
            for v in range(V):
                if not all(bool(batch["mask"][b, t, v]) for t in range(T)):
                    continue
                z = [obj.projector(emb[b, t, v][None])[0] for t in range(T)]
                gap = float(batch["dt"][b, k]) - float(batch["dt"][b, k - 1])
                x = torch.cat([*z[:k], torch.tensor([gap])])[None]
                preds.append(obj.predictor(x)[0].tolist())
                targets.append(obj.target_projector(target[b, 0, v][None])[0].tolist())
                z_all += [zz.tolist() for zz in z]
    n = len(preds)
    mse = sum((p - q) ** 2 for pr, tr in zip(preds, targets) for p, q in zip(pr, tr)) / (n * len(preds[0]))
    var = (_naive_var(z_all, o.var_target) + _naive_var(preds, o.var_target)) / 2
    cov = (_naive_cov(z_all) + _naive_cov(preds)) / 2
    return mse + o.var_weight * var + o.cov_weight * cov, n


@pytest.mark.parametrize("seed, opts", [(0, {}), (1, {"context": 1, "dt": "2"}), (2, {"stride": 2, "proj_dim": 0}),
                                        (3, {"pred_depth": 1, "var_weight": 0.0})])
def test_loss_matches_loop_reference(seed, opts):
    torch.manual_seed(seed)
    obj = FuturePrediction.from_options(D, **{**OPTS, **opts})
    emb, batch, target = _inputs(obj, seed)
    out = obj(emb, batch, target)
    ref, n = naive_loss(obj, emb, batch, target)
    assert n >= 2 and out.metrics["rows"] == n
    assert out.loss.item() == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_contract():
    check_objective(FuturePrediction, options={"proj_dim": 8, "hidden_dim": 8, "pred_hidden": 8})
    check_objective(FuturePrediction, options={"context": 1, "dt": "1-2", "proj_dim": 0}, cameras=("front",))


def test_variance_term_closed_form():
    # every dimension has std >= 1 (values ±2 with equal counts: std = 2·sqrt(n/(n-1)))
    x = torch.tensor([[2.0, -3.0], [-2.0, 3.0], [2.0, 3.0], [-2.0, -3.0]])
    assert variance_term(x, 1.0).item() == 0.0
    # collapsed: a constant column costs γ − sqrt(ε)
    c = torch.ones(5, 3)
    assert variance_term(c, 1.0).item() == pytest.approx(1.0 - math.sqrt(EPS), abs=1e-7)
    # mixed: one dimension healthy, one with std 0.5 → (0 + (1 − sqrt(0.25 + ε))) / 2
    y = torch.stack([torch.tensor([1.0, -1.0, 1.0, -1.0]) * 3, torch.tensor([0.5, -0.5, 0.5, -0.5]) * math.sqrt(3) / 2], 1)
    assert y[:, 1].var().item() == pytest.approx(0.25)
    assert variance_term(y, 1.0).item() == pytest.approx((1 - math.sqrt(0.25 + EPS)) / 2, rel=1e-6)


def test_covariance_term_closed_form():
    # uncorrelated (orthogonal, centred) columns: no off-diagonal covariance
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert covariance_term(x).item() == 0.0
    # two identical columns with variance s²: C_01 = C_10 = s², term = 2·s⁴ / 2
    a = torch.tensor([1.0, 2.0, 3.0, 6.0])
    s2 = a.var().item()
    assert covariance_term(torch.stack([a, a], 1)).item() == pytest.approx(s2**2, rel=1e-6)


def test_effective_rank_closed_form():
    assert effective_rank(torch.eye(6)) == pytest.approx(6.0, rel=1e-5)
    rank1 = torch.randn(10, 1) @ torch.randn(1, 6)
    assert effective_rank(rank1) == pytest.approx(1.0, abs=1e-3)
    assert effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))) == pytest.approx(2.0, rel=1e-5)


def test_telemetry_sees_collapse():
    torch.manual_seed(0)
    obj = FuturePrediction.from_options(D, **OPTS)
    emb, batch, target = _inputs(obj, 0, missing=0.0)
    healthy = obj(emb, batch, target).metrics
    collapsed = obj(torch.ones_like(emb) * batch["mask"][..., None], batch, target).metrics
    assert healthy["effective_rank"] > 5 and healthy["emb_std"] > 0.5
    assert collapsed["emb_std"] == pytest.approx(0.0, abs=1e-6)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert collapsed["pred_std"] < healthy["pred_std"] / 5  # what is left comes from the Δt input
    assert float(collapsed["var_loss"]) > float(healthy["var_loss"])


def test_no_gradient_reaches_the_target():
    torch.manual_seed(0)
    obj = FuturePrediction.from_options(D, **OPTS)
    emb, batch, target = _inputs(obj, 4)
    emb.requires_grad_(True)
    target.requires_grad_(True)
    obj(emb, batch, target).loss.backward()
    assert target.grad is None
    assert all(p.grad is None and not p.requires_grad for p in obj.target_projector.parameters())
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert all(p.grad is not None for p in obj.predictor.parameters())


def test_target_projector_is_an_ema_of_the_projector():
    obj = FuturePrediction.from_options(D, **OPTS, momentum=0.5, final_momentum=0.5)
    assert isinstance(obj.target_projector, ssltk.EMA) and obj.target_projector.source is obj.projector
    for p in obj.projector.parameters():
        p.data.add_(1.0)
    old = [p.clone() for p in obj.target_projector.parameters()]
    ssltk.EMA.update_all(obj, step=1)
    for o, new, s in zip(old, obj.target_projector.parameters(), obj.projector.parameters()):
        assert torch.equal(new, 0.5 * o + 0.5 * s.detach())


def test_views_and_target_request():
    obj = FuturePrediction.from_options(D, context=3, stride=2, dt="2-6")
    req = obj.views()
    assert [(d.lo, d.hi) for d in req.deltas] == [(2, 2), (4, 4), (6, 10)]
    assert req.cameras == "anchor"
    assert obj.target_encoder() == ssltk.TargetRequest((3,), 0.996, 1.0)
    assert FuturePrediction.from_options(D, camera="front, rear").views().cameras == ("front", "rear")


def test_predictor_is_told_the_gap():
    torch.manual_seed(0)
    obj = FuturePrediction.from_options(D, **OPTS)
    z = torch.randn(4, 3, 8)
    assert not torch.allclose(obj.predict(z, torch.full((4,), 0.1)), obj.predict(z, torch.full((4,), 0.3)))


def test_needs_the_target():
    obj = FuturePrediction.from_options(D, **OPTS)
    emb, batch, _ = _inputs(obj)
    with pytest.raises(ssltk.UsageError, match="target"):
        obj(emb, batch)


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"dt": "0.2s-0.5s"}, "frames"),
        ({"context": 0}, "context"),
        ({"stride": 0}, "stride"),
        ({"momentum": 1.2}, "momentum"),
        ({"momentum": 0.99, "final_momentum": 0.9}, "final_momentum"),
        ({"pred_depth": 0}, "pred_depth"),
        ({"var_weight": -1}, "var_weight"),
        ({"proj_dim": -1}, "proj_dim"),
        ({"camera": ","}, "camera"),
    ],
)
def test_bad_options(opts, match):
    with pytest.raises(ssltk.UsageError, match=match):
        FuturePrediction.from_options(D, **opts)
