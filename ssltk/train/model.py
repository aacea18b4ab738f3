"""The trained module: one backbone shared by several weighted objectives.

The backbone runs once per distinct valid frame of the batch; each objective
then sees the embeddings of its own slots and cameras (``ViewPlan``) and owns
its projection head. Wrapped as a whole by DistributedDataParallel.
"""

from __future__ import annotations

import torch
from torch import nn

from ssltk.batch import Batch, normalize, select, select_embeddings
from ssltk.objectives import LossOutput, Objective
from ssltk.views import ViewPlan


class SSLModel(nn.Module):
    """Backbone + objectives; ``forward(batch)`` returns the weighted loss and per-objective outputs."""

    def __init__(
        self,
        backbone: nn.Module,
        objectives: dict[str, Objective],
        weights: dict[str, float],
        plan: ViewPlan,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights)
        self.plan = plan
        self.mean, self.std = tuple(mean), tuple(std)
        self.channels_last = channels_last

    def embed(self, batch: Batch) -> torch.Tensor:
        """Backbone features ``[B, T, V, D]`` for every valid frame (zeros where masked)."""
        frames, mask = batch["frames"], batch["mask"]
        B, T, V, C, H, W = frames.shape
        flat = frames.reshape(B * T * V, C, H, W)
        valid = mask.reshape(-1)
        x = flat[valid]
        if x.dtype == torch.uint8:
            x = normalize(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(x)
        emb = feats.new_zeros(B * T * V, feats.shape[-1])
        emb = emb.index_put((valid.nonzero(as_tuple=True)[0],), feats)
        return emb.view(B, T, V, -1)

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict[str, LossOutput]]:
        emb = self.embed(batch)
        outputs: dict[str, LossOutput] = {}
        total = emb.new_zeros((), dtype=torch.float32)
        for name, objective in self.objectives.items():
            sel = self.plan.selections[name]
            sub = select(batch, sel.slots, sel.cameras)
            out = objective(select_embeddings(emb, sel.slots, sel.cameras).float(), sub)
            outputs[name] = out
            total = total + self.weights[name] * out.loss.float()
        return total, outputs
