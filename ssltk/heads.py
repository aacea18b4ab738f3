"""Projection heads: the small MLP an objective puts between backbone and loss.

SimCLR (Chen et al., 2020, sec. 4.2) showed that a non-linear head
``Linear -> ReLU -> Linear`` in front of the contrastive loss improves the
representation *before* the head, which is what ssltk keeps (the bundle holds
the backbone only). Each objective owns its head, so two objectives trained
together never share one.

Masked frames (``mask`` False) come out of the head as exact zeros. The head
has no batch normalisation, so a row never influences another row's output and
masked rows cannot shift anything (and no device sync is needed to drop them).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """``Linear(D, hidden) -> ReLU -> Linear(hidden, proj)``.

    ``hidden_dim=0`` gives a single ``Linear(D, proj)``; ``proj_dim=0`` gives no
    head at all (the loss sees the backbone features, ``out_dim = D``).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 512, proj_dim: int = 128) -> None:
        super().__init__()
        if in_dim <= 0 or hidden_dim < 0 or proj_dim < 0:
            raise ValueError(f"head dims must be in_dim > 0, hidden_dim >= 0, proj_dim >= 0; got {in_dim}, {hidden_dim}, {proj_dim}")
        if proj_dim == 0:
            self.net: nn.Module = nn.Identity()
            self.out_dim = in_dim
        elif hidden_dim == 0:
            self.net = nn.Linear(in_dim, proj_dim)
            self.out_dim = proj_dim
        else:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, proj_dim))
            self.out_dim = proj_dim

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Project ``x [N, D]``; rows where ``valid`` is False come back as zeros."""
        if valid is None:
            return self.net(x)
        return torch.where(valid.bool()[:, None], self.net(x), 0.0)
