"""temporal-vicreg: VICReg between a frame ``t`` and the same camera's frame ``t + Δt``.

VICReg (Bardes, Ponce and LeCun, ICLR 2022) needs no negatives. The two views
of a pair are two moments of one drive instead of two augmentations. With
``a``, ``b`` the expanded embeddings ``[N, P]`` of the valid pairs::

    invariance  s(a, b) = mean_i ||a_i − b_i||² / P
    variance    v(x)    = mean_j relu(γ − sqrt(Var_j(x) + ε))          (each of a and b)
    covariance  c(x)    = Σ_{j≠k} Cov(x)_jk² / P                       (each of a and b)
    loss = λ·s(a, b) + μ·(v(a) + v(b)) + ν·(c(a) + c(b))

Variance and covariance are batch statistics. Under DDP each rank's rows are
only part of the batch, so ``a`` and ``b`` are gathered from every rank
(``ssltk.gather_with_grad``) and the statistics are those of the global batch.
The invariance term is a mean over pairs, and ``ssltk.ddp_mean`` turns it into
the per-rank share of the global mean. Every rank therefore optimises the
single-process loss on the global batch (``docs/writing_objectives.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

import ssltk

__all__ = ["TemporalVICReg", "TemporalVICRegOptions", "covariance", "variance"]

EPS = 1e-4


@dataclass
class TemporalVICRegOptions:
    """Hyperparameters of ``temporal-vicreg`` (defaults: the VICReg paper's weights)."""

    dt: str = field(default="1-4", metadata={"help": "partner offset Δt: frames (2-6) or seconds (0.2s-0.6s)"})
    cameras: Literal["anchor", "all"] = field(default="anchor", metadata={"help": "pairs from the anchor camera or every camera"})
    hidden_dim: int = field(default=256, metadata={"help": "expander hidden size (0 = one linear layer)"})
    proj_dim: int = field(default=256, metadata={"help": "expander output size P (0 = no expander)"})
    sim_weight: float = field(default=25.0, metadata={"help": "λ, weight of the invariance term"})
    var_weight: float = field(default=25.0, metadata={"help": "μ, weight of the variance term"})
    cov_weight: float = field(default=1.0, metadata={"help": "ν, weight of the covariance term"})
    gamma: float = field(default=1.0, metadata={"help": "γ, target std of every dimension"})

    def __post_init__(self) -> None:
        ssltk.DeltaRange.parse(self.dt)  # a bad range is a one-line UsageError now, not at the first step
        for name in ("hidden_dim", "proj_dim"):
            if getattr(self, name) < 0:
                raise ssltk.UsageError(f"temporal-vicreg.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("sim_weight", "var_weight", "cov_weight", "gamma"):
            if getattr(self, name) < 0:
                raise ssltk.UsageError(f"temporal-vicreg.{name} must be >= 0, got {getattr(self, name)}")


def variance(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``mean_j relu(γ − sqrt(Var_j(x) + ε))`` over the rows of ``x [N, P]`` (N >= 2, unbiased variance)."""
    return F.relu(gamma - torch.sqrt(x.var(dim=0) + EPS)).mean()


def covariance(x: torch.Tensor) -> torch.Tensor:
    """``Σ_{j≠k} C_jk² / P`` with ``C`` the (unbiased) covariance of ``x [N, P]`` (N >= 2)."""
    n, p = x.shape
    xc = x - x.mean(dim=0)
    c = (xc.T @ xc) / (n - 1)
    return (c.pow(2).sum() - torch.diagonal(c).pow(2).sum()) / p


class TemporalVICReg(ssltk.Objective):
    """VICReg between t and t+Δt: invariance across time, variance and covariance over the global batch."""

    name = "temporal-vicreg"
    Options = TemporalVICRegOptions

    def __init__(self, embed_dim: int, options: TemporalVICRegOptions | None = None) -> None:
        super().__init__(embed_dim, options)  # sets self.embed_dim and self.options (defaults if None)
        o = self.options
        self.expander = ssltk.ProjectionHead(embed_dim, o.hidden_dim, o.proj_dim)

    def views(self) -> ssltk.ViewRequest:
        """Slot 0: the anchor frame ``t``; slot 1: ``t + Δt``, ``Δt`` drawn from ``dt``."""
        return ssltk.ViewRequest(cameras=self.options.cameras, deltas=(ssltk.DeltaRange.parse(self.options.dt),))

    def forward(self, emb: torch.Tensor, batch: ssltk.Batch) -> ssltk.LossOutput:
        if emb.dim() != 4 or emb.shape[1] != 2:
            raise ssltk.UsageError(f"temporal-vicreg expects embeddings [B, 2, V, D] (t, t+Δt), got {tuple(emb.shape)}")
        mask = batch["mask"].to(emb.device)
        pairs = mask[:, 0] & mask[:, 1]  # [B, V]: both frames exist
        # Boolean indexing keeps missing frames out of the graph. There may be no pair at
        # all on this rank: the code below still runs (on empty tensors), because every rank
        # must make the same collective calls (the gathers) in the same order.
        a = self.expander(emb[:, 0][pairs])  # [N, P]
        b = self.expander(emb[:, 1][pairs])
        return self.loss_from(a, b, emb[:, 0][pairs])

    def loss_from(self, a: torch.Tensor, b: torch.Tensor, features: torch.Tensor) -> ssltk.LossOutput:
        """The loss of expanded pairs ``a``, ``b`` ``[N, P]`` (this rank's); ``features``: backbone rows for telemetry."""
        o = self.options
        sim = ssltk.ddp_mean((a - b).pow(2).mean(dim=1))  # this rank's share of the global mean
        a_all, _ = ssltk.gather_with_grad(a)  # every rank's rows, gradients flow back to their owners
        b_all, _ = ssltk.gather_with_grad(b)
        loss = o.sim_weight * sim
        metrics = {"invariance": float(sim.detach()), "pairs": float(a_all.shape[0])}
        if a_all.shape[0] >= 2:  # the same decision on every rank: it depends on the global count only
            var = variance(a_all, o.gamma) + variance(b_all, o.gamma)
            cov = covariance(a_all) + covariance(b_all)
            loss = loss + o.var_weight * var + o.cov_weight * cov
            metrics.update(variance=float(var.detach()), covariance=float(cov.detach()))
        if features.shape[0] >= 2:  # collapse telemetry of the backbone features: emb_std, effective_rank
            metrics.update(ssltk.collapse_stats(features))
        return ssltk.LossOutput(loss, metrics)
