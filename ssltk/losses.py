"""The one masked-InfoNCE kernel that every contrastive objective is built on.

An objective is a *mask builder*: it says, for each anchor row ``i`` and key
row ``k``, whether ``k`` is a positive of ``i`` and whether ``k`` must be left
out of the denominator (a likely false negative). :func:`masked_infonce` turns
that into the supervised-contrastive loss ``L_out`` of Khosla et al. (2020,
eq. 2), which for exactly one positive per anchor is SimCLR's NT-Xent (Chen
et al., 2020) and van den Oord et al.'s InfoNCE (2018)::

    s_ik   = cos(z_i, z_k) / tau
    A(i)   = {k valid, k != i, k not excluded}  ∪  P(i)        (denominator)
    P(i)   = {k valid, k != i, k positive of i}
    l_i    = mean_{p in P(i)} [ -s_ip + logsumexp_{a in A(i)} s_ia ]
    loss   = mean over valid anchors with |P(i)| >= 1

Anchors without a positive are left out of the mean (and counted in the
statistics); the loss is never NaN, and neither are its gradients. See
``docs/losses.md``.

Distributed negatives (:func:`gather_with_grad`): anchors stay the local rows,
keys are the rows of every rank; the backward pass sums the key gradients over
ranks before taking the local slice, which is what DDP's gradient averaging
needs (explained in ``docs/losses.md``).

The distributed helpers (``world``, ``gather_with_grad``, ``gather_nograd``,
``all_reduce_sum``, ``ddp_mean``) live in ``ssltk.distributed`` and are
re-exported here; they and :func:`collapse_stats` are public as ``ssltk.<name>``
for plugin objectives (``docs/writing_objectives.md``); each is the identity
with one process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ssltk.distributed import all_reduce_sum, ddp_mean, gather_nograd, gather_with_grad, world  # noqa: F401 - public here too
from ssltk.errors import UsageError

__all__ = [
    "STAT_NAMES",
    "InfoNCEOutput",
    "all_reduce_sum",
    "check_temperature",
    "collapse_stats",
    "ddp_mean",
    "gather_nograd",
    "gather_with_grad",
    "masked_infonce",
    "world",
]

STAT_NAMES = (
    "emb_std",  # std over rows of l2-normalised embeddings, mean over dims (collapse: -> 0; healthy ~ 1/sqrt(D))
    "pos_cos",  # mean cosine of (anchor, positive) pairs
    "neg_cos",  # mean cosine of (anchor, negative) pairs
    "pos_per_anchor",  # valid positives per anchor (anchors with >= 1)
    "neg_per_anchor",  # negatives in the denominator per anchor
    "eff_negatives",  # (sum p)^2 / sum p^2 of the softmax over the negatives (inverse Simpson), mean over anchors
    "anchors",  # anchors that entered the loss
    "anchors_no_pos",  # valid anchors without any valid positive (left out of the loss)
    "top1",  # fraction of anchors whose most similar key (in the denominator) is a positive
)
_STATS_CHUNK = 1024  # rows per chunk when computing statistics (bounds temporary memory)


@dataclass
class InfoNCEOutput:
    """What :func:`masked_infonce` returns.

    ``loss`` is ``loss_sum / max(count, 1)``; ``per_anchor`` holds ``l_i`` (0 for
    anchors left out), ``active`` which anchors entered the loss.
    """

    loss: torch.Tensor
    loss_sum: torch.Tensor
    count: torch.Tensor
    per_anchor: torch.Tensor
    active: torch.Tensor
    num_positives: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def check_temperature(temperature: float, where: str = "temperature") -> float:
    """Return ``temperature`` if it is a finite number > 0, else raise a ``UsageError`` saying what to use."""
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise UsageError(f"{where} must be a number > 0 (typical: 0.05 to 0.5), got {temperature!r}")
    if t < 1e-3:
        raise UsageError(f"{where}={t:g} is too small: logits of 1/{t:g} overflow in float16/bfloat16; use >= 0.001")
    return t


def masked_infonce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    keys: torch.Tensor | None = None,
    anchor_valid: torch.Tensor | None = None,
    key_valid: torch.Tensor | None = None,
    exclude: torch.Tensor | None = None,
    self_index: torch.Tensor | None = None,
    temperature: float = 0.1,
    normalize: bool = True,
    stats: bool = True,
    inplace_backward: bool = True,
) -> InfoNCEOutput:
    """Multi-positive InfoNCE (SupCon ``L_out``) over boolean masks.

    Args:
        anchors: ``[N, D]`` anchor embeddings (l2-normalised here unless ``normalize=False``).
        positives: ``[N, M]`` bool, ``True`` where key ``k`` is a positive of anchor ``i``.
        keys: ``[M, D]`` key embeddings; ``None`` means the anchors themselves (``M = N``).
        anchor_valid: ``[N]`` bool; invalid anchors never enter the loss.
        key_valid: ``[M]`` bool; invalid keys are neither positives nor negatives.
        exclude: ``[N, M]`` bool, keys left out of the denominator (false negatives);
            a key that is also a positive stays in.
        self_index: ``[N]`` long, the key row of each anchor itself (never a key for it);
            default ``arange(N)`` when ``keys is None``, no self otherwise. ``-1`` = none.
        temperature: ``tau > 0``.
        stats: also compute the health statistics (:data:`STAT_NAMES`, floats).
        inplace_backward: turn the saved softmax into the gradient in place (saves an
            ``[N, M]`` allocation); set False to backpropagate through the loss more
            than once (``retain_graph=True``, ``gradcheck``), which otherwise raises.

    Cost: one ``[N, M]`` float matrix kept for the backward pass (the softmax) plus
    the boolean masks; positives are handled as a sparse list of pairs.
    """
    tau = check_temperature(temperature)
    with torch.autocast(anchors.device.type, enabled=False):  # similarities and softmax in float32 at least
        return _masked_infonce(
            _at_least_float32(anchors), positives, _at_least_float32(keys), anchor_valid, key_valid,
            exclude, self_index, tau, normalize, stats, inplace_backward,
        )


def _at_least_float32(x: torch.Tensor | None) -> torch.Tensor | None:
    return x.float() if x is not None and x.dtype in (torch.float16, torch.bfloat16) else x


def _masked_infonce(anchors, positives, keys, anchor_valid, key_valid, exclude, self_index, tau, normalize, stats, inplace):
    n, dev = anchors.shape[0], anchors.device
    q = F.normalize(anchors, dim=-1) if normalize else anchors
    k = q if keys is None else (F.normalize(keys, dim=-1) if normalize else keys)
    m = k.shape[0]
    if self_index is None:
        self_index = torch.arange(n, device=dev) if keys is None else torch.full((n,), -1, device=dev)
    self_index = torch.where((self_index >= 0) & (self_index < m), self_index.long(), -1)
    a_valid = torch.ones(n, dtype=torch.bool, device=dev) if anchor_valid is None else anchor_valid.bool()
    if key_valid is None:
        k_valid = a_valid if keys is None else torch.ones(m, dtype=torch.bool, device=dev)
    else:
        k_valid = key_valid.bool()
    positives = positives.bool()
    exclude = exclude.bool() if exclude is not None else None
    for name, mask in (("positives", positives), ("exclude", exclude)):
        if mask is not None and tuple(mask.shape) != (n, m):
            raise ValueError(f"{name} must be [N, M] = {(n, m)}, got {tuple(mask.shape)}")

    # Positives as a list of (anchor, key) pairs: valid anchor, valid key, not itself.
    pr, pc = positives.nonzero(as_tuple=True)
    keep = a_valid[pr] & k_valid[pc] & (pc != self_index[pr])
    pr, pc = pr[keep], pc[keep]
    num_pos = torch.bincount(pr, minlength=n)
    active = a_valid & (num_pos > 0)
    if m == 0 or n == 0:
        zero = q.sum() * 0.0
        out = InfoNCEOutput(zero, zero, active.sum(), q.new_zeros(n), active, num_pos)
        out.stats = _empty_stats(a_valid, active) if stats else {}
        return out

    qs = q * (1.0 / tau)  # scale the [N, D] side, never the [N, M] matrix
    lse, prob, peak = _MaskedLogSumExp.apply(qs, k, k_valid, exclude, self_index, pr, pc, active, inplace)
    pos_logit = (qs[pr] * k[pc]).sum(-1)  # s_ip for every positive pair
    pos_mean = qs.new_zeros(n).index_add(0, pr, pos_logit) / num_pos.clamp(min=1)
    per_anchor = torch.where(active, lse - pos_mean, 0.0)
    count = active.sum()
    loss_sum = per_anchor.sum()
    out = InfoNCEOutput(loss_sum / count.clamp(min=1), loss_sum, count, per_anchor, active, num_pos)
    if stats:
        pairs = _Pairs(positives, exclude, pr, pc, pos_logit.detach(), self_index, a_valid, k_valid, active, num_pos)
        out.stats = _stats(q.detach(), qs.detach(), k.detach(), prob, peak, pairs, tau)
    return out


class _MaskedLogSumExp(torch.autograd.Function):
    """``lse_i = log sum_{k in A(i)} exp(qs_i . k_k)``; keeps only the softmax for backward.

    Outside ``A(i)`` (invalid keys, the anchor itself, excluded keys that are not
    positives) the logits are ``-inf``. Rows that do not enter the loss are set to
    0 (a finite, ignored value), so no row is ever all ``-inf``. The softmax ``P``
    is computed in place in the logits buffer and returned too, with each row's
    maximum of ``P`` (both non-differentiable, for the statistics). Backward turns that buffer into the gradient in place
    (``dlse_i / ds_ik = P_ik``) when ``inplace``: one ``[N, M]`` matrix in all; a second
    backward through the same graph then fails autograd's in-place check instead of
    going wrong.
    """

    @staticmethod
    def forward(ctx, qs, k, k_valid, exclude, self_index, pr, pc, active, inplace):
        ctx.inplace = inplace
        prob = qs @ k.T  # [N, M] logits, soon the softmax
        if not bool(k_valid.all()):
            prob.masked_fill_(~k_valid[None, :], float("-inf"))
        if exclude is not None:
            prob.masked_fill_(exclude, float("-inf"))
            prob[pr, pc] = (qs[pr] * k[pc]).sum(-1)  # positives stay in the denominator
        rows = (self_index >= 0).nonzero().squeeze(1)
        prob[rows, self_index[rows]] = float("-inf")
        prob.index_fill_(0, (~active).nonzero().squeeze(1), 0.0)
        top = prob.amax(1, keepdim=True)  # finite: every row has a finite entry
        total = prob.sub_(top).exp_().sum(1, keepdim=True)  # >= 1 (the max contributes exp(0))
        prob.div_(total)
        peak = total.reciprocal().squeeze(1)  # the row maximum of P, exactly as div_ computed it
        ctx.save_for_backward(qs, k, prob)
        ctx.mark_non_differentiable(prob, peak)
        return (top + total.log()).squeeze(1), prob, peak

    @staticmethod
    def backward(ctx, grad_lse, _grad_prob, _grad_peak):
        qs, k, prob = ctx.saved_tensors
        g = grad_lse[:, None]  # d lse_i / d s_ik = P_ik
        g = prob.mul_(g) if ctx.inplace else prob * g
        grad_q = g @ k if ctx.needs_input_grad[0] else None
        grad_k = g.T @ qs if ctx.needs_input_grad[1] else None
        return grad_q, grad_k, None, None, None, None, None, None, None


@dataclass
class _Pairs:
    """Mask information the statistics need (all detached)."""

    positives: torch.Tensor
    exclude: torch.Tensor | None
    pr: torch.Tensor
    pc: torch.Tensor
    pos_logit: torch.Tensor
    self_index: torch.Tensor
    a_valid: torch.Tensor
    k_valid: torch.Tensor
    active: torch.Tensor
    num_pos: torch.Tensor


def _empty_stats(a_valid, active) -> dict[str, float]:
    out = dict.fromkeys(STAT_NAMES, 0.0)
    out["anchors_no_pos"] = float((a_valid & ~active).sum())
    return out


@torch.no_grad()
def _stats(q, qs, k, prob, peak, p: _Pairs, tau: float) -> dict[str, float]:
    """Health statistics as floats (one device sync); dense work only in row chunks of ``prob``."""
    n, act = q.shape[0], p.active
    qd, kd = qs.double(), k.double()
    # Negatives = denominator minus positives = valid keys - self - excluded non-positives - positives.
    s_self = torch.where(p.self_index >= 0, (qd * kd[p.self_index.clamp(min=0)]).sum(-1), 0.0)
    self_valid = (p.self_index >= 0) & p.k_valid[p.self_index.clamp(min=0)]
    neg_sum = qd @ (kd * p.k_valid[:, None]).sum(0) - s_self * self_valid - qd.new_zeros(n).index_add(0, p.pr, p.pos_logit.double())
    neg_cnt = p.k_valid.sum() - self_valid.long() - p.num_pos
    if p.exclude is not None:
        er, ec = p.exclude.nonzero(as_tuple=True)
        keep = act[er] & p.k_valid[ec] & (ec != p.self_index[er]) & ~p.positives[er, ec]
        er, ec = er[keep], ec[keep]
        neg_sum -= qd.new_zeros(n).index_add(0, er, (qd[er] * kd[ec]).sum(-1))
        neg_cnt -= torch.bincount(er, minlength=n)
    # Effective number of negatives: (sum P)^2 / sum P^2 over the negatives (inverse Simpson index).
    mass, sq = prob.new_zeros(n), prob.new_zeros(n)
    buf = prob.new_empty((min(n, _STATS_CHUNK), prob.shape[1]))  # one buffer reused for every chunk
    for lo in range(0, n, _STATS_CHUNK):
        sl = slice(lo, lo + _STATS_CHUNK)
        chunk = buf[: prob[sl].shape[0]].copy_(prob[sl]).masked_fill_(p.positives[sl], 0.0)
        mass[sl], sq[sl] = chunk.sum(1), torch.linalg.vector_norm(chunk, dim=1).square()
    eff = torch.where(act & (sq > 0), mass.square() / sq.clamp(min=1e-38), 0.0)
    # top-1: the most similar key in the denominator is a positive (its P is the row maximum).
    best_pos = prob.new_zeros(n).scatter_reduce(0, p.pr, prob[p.pr, p.pc], "amax")
    hit = (best_pos >= peak) & act
    qv = q[p.a_valid].float()
    emb_std = F.normalize(qv, dim=-1).std(0).mean() if qv.shape[0] > 1 else qv.new_zeros(())
    count = act.sum().double().clamp(min=1)
    n_neg = torch.where(act, neg_cnt, 0).sum().double()
    vec = torch.stack(
        [
            emb_std.double(),
            p.pos_logit.double().sum() * tau / max(1, p.pr.numel()),
            torch.where(act, neg_sum, 0.0).sum() * tau / n_neg.clamp(min=1),
            p.num_pos[act].sum().double() / count,
            n_neg / count,
            eff.double().sum() / count,
            act.sum().double(),
            (p.a_valid & ~act).sum().double(),
            hit.sum().double() / count,
        ]
    )
    return dict(zip(STAT_NAMES, vec.tolist()))


@torch.no_grad()
def collapse_stats(z: torch.Tensor) -> dict[str, float]:
    """Collapse telemetry of embeddings ``z [N, D]`` (valid rows only), as floats.

    * ``emb_std``: the std over rows of the l2-normalised rows, mean over dimensions
      (0 = every row the same: collapse; about ``1/sqrt(D)`` when spread out). The
      contrastive objectives report the same number under the same name.
    * ``effective_rank``: RankMe, ``exp(−Σ p_k log p_k)`` with ``p = σ / ‖σ‖₁`` over the
      singular values of ``z`` (1 = dimensional collapse onto a line; at most ``min(N, D)``).

    Both are NaN with fewer than two rows. Per rank under DDP.
    """
    z = z.detach().float().reshape(-1, z.shape[-1])
    if z.shape[0] < 2:
        return {"emb_std": float("nan"), "effective_rank": float("nan")}
    std = F.normalize(z, dim=-1).std(0).mean()
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp(min=1e-12)
    rank = torch.exp(-torch.special.xlogy(p, p).sum())
    return dict(zip(("emb_std", "effective_rank"), torch.stack([std, rank]).tolist()))
