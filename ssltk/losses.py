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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ssltk.errors import UsageError

__all__ = [
    "InfoNCEOutput",
    "check_temperature",
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
    "eff_negatives",  # exp(entropy) of the softmax over the negatives, mean over anchors
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
    """
    tau = check_temperature(temperature)
    n = anchors.shape[0]
    q = F.normalize(anchors, dim=-1) if normalize else anchors
    if keys is None:
        k = q
        m = n
        if self_index is None:
            self_index = torch.arange(n, device=anchors.device)
    else:
        k = F.normalize(keys, dim=-1) if normalize else keys
        m = keys.shape[0]
    dev = anchors.device
    a_valid = torch.ones(n, dtype=torch.bool, device=dev) if anchor_valid is None else anchor_valid.bool()
    if key_valid is None:
        k_valid = a_valid if keys is None else torch.ones(m, dtype=torch.bool, device=dev)
    else:
        k_valid = key_valid.bool()
    if positives.shape != (n, m):
        raise ValueError(f"positives must be [N, M] = {(n, m)}, got {tuple(positives.shape)}")

    pos, denom = _masks(positives, exclude, a_valid, k_valid, self_index, n, m)
    num_pos = pos.sum(1)
    active = a_valid & (num_pos > 0)
    # Rows that do not enter the loss get the full (finite) denominator so that
    # neither the forward nor the backward pass ever sees logsumexp(-inf, ..., -inf).
    denom.logical_or_((~active)[:, None])

    logits = (q * (1.0 / tau)) @ k.T  # [N, M] = cos / tau (scaling q, not the [N, M] matrix)
    if m == 0:
        zero = q.sum() * 0.0
        return InfoNCEOutput(zero, zero, active.sum(), q.new_zeros(n), active, num_pos, _empty_stats(q, a_valid, active))
    lse = torch.logsumexp(torch.where(denom, logits, float("-inf")), dim=1)  # [N]
    pos_mean = torch.where(pos, logits, 0.0).sum(1) / num_pos.clamp(min=1)
    per_anchor = torch.where(active, lse - pos_mean, 0.0)
    count = active.sum()
    loss_sum = per_anchor.sum()
    loss = loss_sum / count.clamp(min=1)
    out = InfoNCEOutput(loss, loss_sum, count, per_anchor, active, num_pos)
    if stats:
        out.stats = _stats(q, logits.detach(), pos, denom, a_valid, active, num_pos, tau)
    return out


def _masks(positives, exclude, a_valid, k_valid, self_index, n, m):
    """Effective positive and denominator masks (fresh tensors, safe to modify)."""
    pos = positives.bool() & k_valid[None, :]
    pos.logical_and_(a_valid[:, None])
    if exclude is None:
        denom = k_valid[None, :].expand(n, m).clone()
    else:
        denom = ~exclude.bool()
        denom.logical_and_(k_valid[None, :])
    denom.logical_or_(pos)
    if self_index is not None:
        rows = torch.arange(n, device=pos.device)
        has_self = (self_index >= 0) & (self_index < m)
        rows, cols = rows[has_self], self_index[has_self].long()
        pos[rows, cols] = False
        denom[rows, cols] = False
    return pos, denom


def _empty_stats(q, a_valid, active) -> dict[str, float]:
    out = dict.fromkeys(STAT_NAMES, 0.0)
    out["anchors_no_pos"] = float((a_valid & ~active).sum())
    return out


@torch.no_grad()
def _stats(q, logits, pos, denom, a_valid, active, num_pos, tau) -> dict[str, float]:
    """Health statistics as floats (one device sync); computed in row chunks to bound memory."""
    acc = torch.zeros(6, dtype=torch.float64, device=q.device)  # pos_cos_sum, neg_cos_sum, n_neg, eff_sum, eff_n, top1
    for lo in range(0, logits.shape[0], _STATS_CHUNK):
        sl = slice(lo, lo + _STATS_CHUNK)
        lg, p, d, act = logits[sl].float(), pos[sl], denom[sl], active[sl]
        neg = d & ~p & act[:, None]
        p = p & act[:, None]
        acc[0] += torch.where(p, lg, 0.0).sum().double()
        acc[1] += torch.where(neg, lg, 0.0).sum().double()
        n_neg = neg.sum(1)
        acc[2] += n_neg.sum().double()
        neg_lg = torch.where(neg, lg, float("-inf"))
        lse = torch.logsumexp(neg_lg, 1, keepdim=True)
        prob = torch.exp(neg_lg - lse).nan_to_num_(0.0)
        entropy = lse.squeeze(1) - torch.where(neg, prob * lg, 0.0).sum(1)
        has_neg = n_neg > 0
        acc[3] += torch.where(has_neg, entropy.exp(), 0.0).sum().double()
        acc[4] += has_neg.sum().double()
        best = torch.where(d, lg, float("-inf")).argmax(1, keepdim=True)
        acc[5] += (p.gather(1, best).squeeze(1) & act).sum().double()
    qv = q.detach()[a_valid].float()
    emb_std = F.normalize(qv, dim=-1).std(0).mean() if qv.shape[0] > 1 else qv.new_zeros(())
    count = active.sum()
    total_pos = num_pos[active].sum()
    vec = torch.stack(
        [
            emb_std.double(),
            acc[0] * tau / total_pos.clamp(min=1).double(),
            acc[1] * tau / acc[2].clamp(min=1),
            total_pos.double() / count.clamp(min=1).double(),
            acc[2] / count.clamp(min=1).double(),
            acc[3] / acc[4].clamp(min=1),
            count.double(),
            (a_valid & ~active).sum().double(),
            acc[5] / count.clamp(min=1).double(),
        ]
    )
    return dict(zip(STAT_NAMES, vec.tolist()))


# -- distributed ------------------------------------------------------------------


def world(group=None) -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


def _sizes(n: int, device, group) -> list[int]:
    _, w = world(group)
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(mine) for _ in range(w)]
    dist.all_gather(out, mine, group=group)
    return [int(s) for s in out]


def _all_gather_rows(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (ranks may hold different row counts)."""
    most = max(sizes)
    padded = x.new_zeros((most,) + tuple(x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over ranks, then keeps the local slice.

    Every rank's loss uses every rank's rows as keys, so the gradient of the
    *global* objective w.r.t. my rows is the sum of what each rank's loss sends
    them: all_reduce(SUM). DDP then divides parameter gradients by the world
    size, matching a global loss defined as the mean of the per-rank losses.
    Taking only the local slice (no all_reduce) would drop the other ranks'
    contributions; summing in DDP without its averaging would scale by W.
    """

    @staticmethod
    def forward(ctx, x, sizes, rank, group):  # noqa: D401
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _all_gather_rows(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None, None


def gather_with_grad(x: torch.Tensor, group=None) -> tuple[torch.Tensor, int]:
    """Rows of ``x`` from every rank (autograd-aware) and the offset of the local rows.

    With one process (or torch.distributed not initialised) returns ``(x, 0)``.
    """
    rank, w = world(group)
    if w == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device, group)
    return _GatherWithGrad.apply(x, sizes, rank, group), sum(sizes[:rank])


def gather_nograd(x: torch.Tensor, group=None) -> tuple[torch.Tensor, int]:
    """Like :func:`gather_with_grad` for tensors without gradients (ids, masks, counts)."""
    rank, w = world(group)
    if w == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device, group)
    return _all_gather_rows(x, sizes, group), sum(sizes[:rank])


def all_reduce_sum(x: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of a (detached) tensor over ranks; ``x`` itself with one process."""
    _, w = world(group)
    if w == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x
