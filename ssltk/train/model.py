"""The trained module: one backbone shared by several weighted objectives.

The backbone encodes every valid cell ``[b, t, v]`` of the batch (a frame that two
samples of a segment share is encoded once per sample); each objective then sees
the embeddings of its own slots and cameras (``ViewPlan``) and owns its projection head. Wrapped as a whole by DistributedDataParallel.

An objective whose ``target_encoder()`` returns a ``TargetRequest`` gets an EMA
copy of the backbone (``targets[name]``, an ``ssltk.EMA``): it runs without
gradient on the requested slots and its features are passed to the objective
as ``target``. :meth:`SSLModel.update_targets` steps every EMA of the model
after each optimizer step; the copies are part of ``state_dict()``, so
checkpoints hold them. Their parameters never require gradient: the optimizer
and DDP's gradient reduction leave them alone.

The backbone is checked first (``ssltk.backbones.validate_backbone``: its
attributes, and one ``save_pretrained`` into a temporary folder), so a family
that cannot write its bundle fails before step 0 instead of after training.
"""

from __future__ import annotations

import torch
from torch import nn

from ssltk.backbones import validate_backbone
from ssltk.batch import Batch, normalize, select, select_embeddings
from ssltk.ema import EMA
from ssltk.errors import UsageError
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
        validate_backbone(backbone)  # a broken save_pretrained fails here, not after training
        self.backbone = backbone
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights)
        self.plan = plan
        self.mean, self.std = tuple(mean), tuple(std)
        self.channels_last = channels_last
        self.targets = nn.ModuleDict()
        self.target_slots: dict[str, tuple[int, ...]] = {}  # objective -> slots of the full batch
        for name, objective in objectives.items():
            request = objective.target_encoder()
            if request is None:
                continue
            own = plan.selections[name].slots
            bad = [s for s in request.slots if s >= len(own)]
            if bad:
                raise UsageError(f"objective {name!r} asks for a target encoder on slot(s) {bad}, "
                                 f"but it has only {len(own)} slots (positions 0..{len(own) - 1})")
            self.targets[name] = EMA(backbone, request.momentum, request.final_momentum)
            self.target_slots[name] = tuple(own[s] for s in request.slots)

    def embed(self, batch: Batch, encoder: nn.Module | None = None) -> torch.Tensor:
        """Features ``[B, T, V, D]`` of ``encoder`` (default: the backbone) for every valid frame (zeros where masked)."""
        encoder = self.backbone if encoder is None else encoder
        frames, mask = batch["frames"], batch["mask"]
        B, T, V, C, H, W = frames.shape
        flat = frames.reshape(B * T * V, C, H, W)
        valid = mask.reshape(-1)
        x = flat[valid]
        if x.dtype == torch.uint8:
            x = normalize(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        feats = encoder(x)
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
            mine = select_embeddings(emb, sel.slots, sel.cameras).float()
            if name in self.targets:
                with torch.no_grad():
                    seen = select(batch, self.target_slots[name], sel.cameras)
                    target = self.embed(seen, self.targets[name].module).float()
                out = objective(mine, sub, target)
            else:
                out = objective(mine, sub)
            outputs[name] = out
            total = total + self.weights[name] * out.loss.float()
        return total, outputs

    def update_targets(self, step: int, total_steps: int) -> dict[str, float]:
        """Update every :class:`ssltk.EMA` in the model after optimizer step ``step``; ``{path: momentum}``."""
        return EMA.update_all(self, step, total_steps)
