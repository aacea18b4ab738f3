"""Objective ``future-prediction``: predict a future frame's EMA-target embedding (latent dynamics).

From the online embeddings of ``context`` frames ``t, t+s, ..., t+(context-1)·s``
a small predictor predicts the embedding of the frame ``Δt`` after the last one,
as produced by a stop-gradient EMA *target encoder* (an ``ssltk.EMA`` of the
backbone that the trainer runs, followed by an EMA of this objective's
projector): BYOL's online/target split (Grill et al., NeurIPS 2020) applied to
time, as in JEPA-style latent prediction (Assran et al., I-JEPA, CVPR 2023;
Bardes et al., V-JEPA, 2024). The predictor is told ``Δt`` (seconds).

An EMA target and a predictor alone can still collapse; VICReg's variance and
covariance terms (Bardes, Ponce, LeCun, ICLR 2022) on the online projections
and on the predictions guard against it, and the objective reports collapse
telemetry: per-dimension std and the effective rank (RankMe, Garrido et al.,
ICML 2023) of the backbone embeddings. See ``docs/objectives/future-prediction.md``.

This module uses only the public ``ssltk`` API.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

import ssltk
from ssltk.contrastive import parse_cameras

__all__ = ["FuturePrediction", "covariance_term", "effective_rank", "variance_term"]

EPS = 1e-4  # VICReg's epsilon inside the square root of the variance


@dataclass
class FuturePredictionOptions:
    """Options of ``future-prediction``."""

    context: int = field(default=3, metadata={"help": "context frames given to the predictor: t, t+stride, ..."})
    stride: int = field(default=1, metadata={"help": "frames between context frames"})
    dt: str = field(default="2-6", metadata={"help": "Δt of the predicted frame after the last context frame, frames ('2-6', '4')"})
    camera: str = field(default="anchor", metadata={"help": "'anchor', 'all' or comma-separated names; each camera predicts its own future"})
    proj_dim: int = field(default=128, metadata={"help": "projector output size (0 = no projector: predict backbone features)"})
    hidden_dim: int = field(default=512, metadata={"help": "projector hidden size (0 = one linear layer)"})
    pred_depth: int = field(default=2, metadata={"help": "linear layers of the predictor (>= 1)"})
    pred_hidden: int = field(default=512, metadata={"help": "hidden width of the predictor"})
    momentum: float = field(default=0.996, metadata={"help": "EMA momentum of the target encoder at step 0"})
    final_momentum: float = field(default=1.0, metadata={"help": "EMA momentum at the last step (cosine schedule)"})
    var_weight: float = field(default=1.0, metadata={"help": "weight of the variance (anti-collapse) term"})
    cov_weight: float = field(default=0.04, metadata={"help": "weight of the covariance (decorrelation) term"})
    var_target: float = field(default=1.0, metadata={"help": "per-dimension std the variance term asks for (γ)"})

    def validate(self) -> None:
        if self.context < 1 or self.stride < 1:
            raise ssltk.UsageError(f"need context >= 1 and stride >= 1; got context={self.context}, stride={self.stride}")
        delta = ssltk.DeltaRange.parse(self.dt)
        if delta.unit != "frames":
            raise ssltk.UsageError(f"future-prediction.dt must be in frames (e.g. 2-6), got {self.dt!r}")
        parse_cameras(self.camera)
        for name in ("proj_dim", "hidden_dim", "pred_hidden"):
            if getattr(self, name) < 0:
                raise ssltk.UsageError(f"future-prediction.{name} must be >= 0, got {getattr(self, name)}")
        if self.pred_depth < 1 or (self.pred_depth > 1 and self.pred_hidden < 1):
            raise ssltk.UsageError(f"need pred_depth >= 1 (and pred_hidden >= 1 when pred_depth > 1); "
                                   f"got pred_depth={self.pred_depth}, pred_hidden={self.pred_hidden}")
        ssltk.TargetRequest((0,), self.momentum, self.final_momentum)  # checks both are in [0, 1]
        if self.final_momentum < self.momentum:
            raise ssltk.UsageError(f"final_momentum ({self.final_momentum}) must be >= momentum ({self.momentum})")
        for name in ("var_weight", "cov_weight", "var_target"):
            if getattr(self, name) < 0:
                raise ssltk.UsageError(f"future-prediction.{name} must be >= 0, got {getattr(self, name)}")


def mlp(in_dim: int, hidden: int, out_dim: int, depth: int) -> nn.Module:
    """``depth`` linear layers with ReLU between them (no normalisation: rows stay independent)."""
    if depth == 1 or hidden == 0:
        return nn.Linear(in_dim, out_dim)
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth - 1):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


def variance_term(x: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """VICReg variance: ``mean_j relu(γ − sqrt(Var_j(x) + ε))`` over the rows of ``x [N, d]`` (N >= 2)."""
    std = torch.sqrt(x.var(dim=0) + EPS)
    return F.relu(gamma - std).mean()


def covariance_term(x: torch.Tensor) -> torch.Tensor:
    """VICReg covariance: ``Σ_{i≠j} C_ij² / d`` with ``C`` the covariance of ``x [N, d]`` (N >= 2)."""
    n, d = x.shape
    xc = x - x.mean(dim=0)
    cov = (xc.T @ xc) / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


@torch.no_grad()
def effective_rank(x: torch.Tensor) -> float:
    """RankMe: ``exp(−Σ p_k log p_k)``, ``p = σ / ‖σ‖₁ + 1e-7`` over the singular values of ``x [N, d]``."""
    if x.shape[0] == 0:
        return float("nan")
    s = torch.linalg.svdvals(x.detach().float())
    p = s / s.sum().clamp_min(1e-12) + 1e-7
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def _std(x: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of ``x [N, d]`` (population std for N = 1)."""
    return float(x.float().std(dim=0, correction=1 if x.shape[0] > 1 else 0).mean())


class FuturePrediction(ssltk.Objective):
    """Latent future prediction: predict the EMA target encoder's embedding of t+Δt from k past frames."""

    name = "future-prediction"
    Options = FuturePredictionOptions

    def __init__(self, embed_dim: int, options: FuturePredictionOptions | None = None) -> None:
        super().__init__(embed_dim, options)
        o = self.options
        if o.proj_dim == 0:
            self.projector: nn.Module = nn.Identity()
            self.out_dim = embed_dim
        else:
            self.projector = mlp(embed_dim, o.hidden_dim, o.proj_dim, 2)
            self.out_dim = o.proj_dim
        # The target side: EMA of the backbone (the trainer's, see target_encoder) then EMA of the projector.
        self.target_projector = ssltk.EMA(self.projector, o.momentum, o.final_momentum)
        self.predictor = mlp(o.context * self.out_dim + 1, o.pred_hidden, self.out_dim, o.pred_depth)

    def views(self) -> ssltk.ViewRequest:
        """``context`` frames ``stride`` apart (slot ``t`` first), then the predicted frame ``Δt`` after the last."""
        o = self.options
        last = (o.context - 1) * o.stride
        delta = ssltk.DeltaRange.parse(o.dt)
        deltas = [ssltk.DeltaRange(i * o.stride, i * o.stride) for i in range(1, o.context)]
        deltas.append(ssltk.DeltaRange(last + delta.lo, last + delta.hi))
        return ssltk.ViewRequest(cameras=parse_cameras(o.camera), deltas=tuple(deltas))

    def target_encoder(self) -> ssltk.TargetRequest:
        """The EMA target encoder runs on the predicted frame only (the last slot)."""
        return ssltk.TargetRequest((self.options.context,), self.options.momentum, self.options.final_momentum)

    def forward(self, emb: torch.Tensor, batch: ssltk.Batch, target: torch.Tensor | None = None) -> ssltk.LossOutput:
        k = self.options.context
        if emb.dim() != 4 or emb.shape[1] != k + 1:
            raise ssltk.UsageError(f"future-prediction expects embeddings [B, {k + 1}, V, D], got {tuple(emb.shape)}")
        if target is None or target.shape[:1] + target.shape[2:] != emb.shape[:1] + emb.shape[2:] or target.shape[1] != 1:
            raise ssltk.UsageError("future-prediction needs the target encoder's features `target` [B, 1, V, D] "
                                   "(the trainer passes them; see docs/ema.md)")
        mask = batch["mask"].to(emb.device)
        complete = mask.all(dim=1)  # [B, V]: every context frame and the future frame exist
        n = int(complete.sum())
        if n == 0:
            # Nothing to predict: a zero loss that still reaches every parameter and the backbone.
            zero = emb.sum() * 0.0 + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
            return ssltk.LossOutput(zero, {"rows": 0})
        # Boolean indexing keeps missing frames (zeros, or garbage) out of the graph.
        frames = emb.permute(0, 2, 1, 3)[complete]  # [N, k+1, D]
        dt = batch["dt"].to(emb.device)
        gap = (dt[:, k] - dt[:, k - 1]).float()[:, None].expand(complete.shape)[complete]  # [N] seconds
        return self.loss_from(frames, target[:, 0][complete].detach(), gap)

    def predict(self, z_context: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        """Predictions ``[N, P]`` from projected context ``[N, k, P]`` and the Δt ``[N]`` in seconds."""
        return self.predictor(torch.cat([z_context.flatten(1), gap[:, None].to(z_context.dtype)], dim=1))

    def loss_from(self, frames: torch.Tensor, target: torch.Tensor, gap: torch.Tensor) -> ssltk.LossOutput:
        """The loss for complete rows: online embeddings ``[N, k+1, D]``, target features ``[N, D]``, Δt ``[N]``."""
        o = self.options
        N, T, D = frames.shape
        z = self.projector(frames.reshape(N * T, D)).view(N, T, -1)  # online projections of every frame
        p = self.predict(z[:, : o.context], gap).float()
        with torch.no_grad():
            z_target = self.target_projector(target).float()
        pred_loss = F.mse_loss(p, z_target)
        loss = pred_loss
        metrics: dict[str, float | torch.Tensor] = {"rows": N, "pred_loss": pred_loss.detach()}
        if N >= 2:
            zf = z.reshape(N * T, -1).float()
            var = (variance_term(zf, o.var_target) + variance_term(p, o.var_target)) / 2
            cov = (covariance_term(zf) + covariance_term(p)) / 2
            loss = loss + o.var_weight * var + o.cov_weight * cov
            metrics.update(var_loss=var.detach(), cov_loss=cov.detach())
        with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
            flat = frames.reshape(N * T, D).float()
            metrics.update(
                emb_std=_std(flat),
                effective_rank=effective_rank(flat),
                pred_std=_std(p),
                target_std=_std(z_target),
                cos=float(F.cosine_similarity(p, z_target, dim=1, eps=1e-8).mean()),
            )
        return ssltk.LossOutput(loss, metrics)
