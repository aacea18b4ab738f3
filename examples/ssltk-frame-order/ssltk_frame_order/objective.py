"""Frame-order verification: is a pair of frames in temporal order, or swapped?

The "arrow of time" pretext task (Misra et al., *Shuffle and Learn*, ECCV 2016;
Wei et al., *Learning and Using the Arrow of Time*, CVPR 2018), reduced to
pairs. For every anchor frame ``t`` and its partner ``t + Δt`` (same camera) a
fair coin decides whether the two are swapped; a small head sees the pair and
predicts whether it is in order. Features that only describe appearance are
symmetric in time and cannot solve the task; the backbone has to encode what
changes, and in which direction (ego motion, objects approaching).

The head is antisymmetric by construction::

    logit(a, b) = f([a, b]) - f([b, a])        so  logit(b, a) = -logit(a, b)

hence a pair of identical frames scores exactly 0 (probability 1/2, loss ln 2).

Shapes: ``emb`` is ``[B, 2, V, D]`` (slot 0 = ``t``, slot 1 = ``t + Δt``) and
``batch["mask"]`` is ``[B, 2, V]``. A pair counts only where both frames are
valid; the loss is the mean binary cross-entropy over those pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import ssltk

__all__ = ["FrameOrder"]


@dataclass
class FrameOrderOptions:
    """Hyperparameters of ``frame-order``."""

    hidden_dim: int = 256  # width of the order head's hidden layer
    min_delta: int = 1  # smallest partner offset Δt, in frames
    max_delta: int = 4  # largest partner offset Δt, in frames (too large: trivially easy)
    swap_prob: float = 0.5  # probability that a pair is shown swapped (0.5 = no label prior)
    cameras: Literal["anchor", "all"] = "anchor"  # pairs from the anchor camera or from every camera

    def __post_init__(self) -> None:
        if self.hidden_dim <= 0:
            raise ssltk.UsageError(f"frame-order.hidden_dim must be positive, got {self.hidden_dim}")
        if not 1 <= self.min_delta <= self.max_delta:
            raise ssltk.UsageError(
                f"frame-order: need 1 <= min_delta <= max_delta, got {self.min_delta}..{self.max_delta}"
            )
        if not 0.0 < self.swap_prob < 1.0:
            raise ssltk.UsageError(f"frame-order.swap_prob must be in (0, 1), got {self.swap_prob}")


class FrameOrder(ssltk.Objective):
    """Frame-order verification: classify (t, t+Δt) pairs as in order or swapped (arrow of time)."""

    name = "frame-order"
    Options = FrameOrderOptions

    def __init__(self, embed_dim: int, options: FrameOrderOptions | None = None) -> None:
        super().__init__(embed_dim, options)
        hidden = self.options.hidden_dim
        # f([a, b]); the last layer has no bias because it would cancel in f([a,b]) - f([b,a]).
        self.head = nn.Sequential(
            nn.Linear(2 * embed_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1, bias=False),
        )

    def views(self) -> ssltk.ViewRequest:
        """The anchor frame and one partner ``Δt`` in ``[min_delta, max_delta]`` frames later."""
        delta = ssltk.DeltaRange(self.options.min_delta, self.options.max_delta)
        return ssltk.ViewRequest(cameras=self.options.cameras, deltas=(delta,))

    def order_logits(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Logit that ``first`` comes before ``second``: ``[N, D], [N, D] -> [N]`` (antisymmetric)."""
        forward = self.head(torch.cat([first, second], dim=-1))
        backward = self.head(torch.cat([second, first], dim=-1))
        return (forward - backward).squeeze(-1)

    def pair_loss(self, earlier: torch.Tensor, later: torch.Tensor, swap: torch.Tensor) -> ssltk.LossOutput:
        """BCE over pairs ``[N, D]`` shown swapped where ``swap`` (bool ``[N]``) is True."""
        s = swap.unsqueeze(-1)
        first = torch.where(s, later, earlier)
        second = torch.where(s, earlier, later)
        logits = self.order_logits(first, second)
        in_order = (~swap).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, in_order)
        with torch.no_grad():
            accuracy = ((logits > 0) == (~swap)).float().mean()
        return ssltk.LossOutput(loss, {"accuracy": float(accuracy), "pairs": float(swap.numel())})  # floats

    def forward(self, emb: torch.Tensor, batch: ssltk.Batch) -> ssltk.LossOutput:
        if emb.dim() != 4 or emb.shape[1] != 2:
            raise ssltk.UsageError(f"frame-order expects embeddings [B, 2, V, D] (t, t+Δt), got {tuple(emb.shape)}")
        mask = batch["mask"].to(emb.device)
        valid = mask[:, 0] & mask[:, 1]  # [B, V]: both frames of the pair exist
        if not bool(valid.any()):
            # Nothing to learn from: a zero loss that still reaches every parameter.
            zero = sum(p.sum() for p in self.parameters()) * 0.0
            return ssltk.LossOutput(zero, {"accuracy": float("nan"), "pairs": 0.0})
        # Boolean indexing keeps invalid entries (zeros, or garbage) out of the graph.
        earlier, later = emb[:, 0][valid], emb[:, 1][valid]  # [N, D]
        swap = torch.rand(earlier.shape[0], device=emb.device) < self.options.swap_prob
        return self.pair_loss(earlier, later, swap)
