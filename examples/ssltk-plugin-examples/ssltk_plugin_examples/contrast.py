"""pair-contrast: InfoNCE between a frame ``t`` and the same camera's frame ``t + Δt``.

A contrastive objective written on ``ssltk.ContrastiveObjective``: the base
class flattens the embeddings into rows, projects them, gathers keys from every
rank and runs ssltk's masked InfoNCE kernel (``docs/losses.md``). The plugin
only says which rows are positives and which are left out of the denominator.

For the row of sample ``s``, slot ``t``, camera ``c`` the one positive is the
row of the same sample and camera in the other slot (CPC/SimCLR-style temporal
pairs, van den Oord et al. 2018; Chen et al. 2020). Other frames of the same
episode within ``guard`` frames look almost the same; they would be false
negatives, so they are excluded from the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import ssltk

__all__ = ["PairContrast", "PairContrastOptions"]


@dataclass
class PairContrastOptions(ssltk.ContrastiveOptions):
    """Hyperparameters of ``pair-contrast`` (plus temperature, proj_dim, hidden_dim, gather)."""

    dt: str = field(default="1-4", metadata={"help": "partner offset Δt: frames (2-6) or seconds (0.2s-0.6s)"})
    guard: int = field(default=2, metadata={"help": "same-episode frames this close are not negatives"})
    cameras: Literal["anchor", "all"] = field(default="anchor", metadata={"help": "pairs from the anchor camera or every camera"})

    def validate(self) -> None:
        super().validate()  # temperature, proj_dim, hidden_dim
        ssltk.DeltaRange.parse(self.dt)
        if self.guard < 0:
            raise ssltk.UsageError(f"pair-contrast.guard must be >= 0, got {self.guard}")


class PairContrast(ssltk.ContrastiveObjective):
    """Temporal pair InfoNCE: (t, t+Δt) of one camera are positives, near frames of the episode are not negatives."""

    name = "pair-contrast"
    Options = PairContrastOptions

    def views(self) -> ssltk.ViewRequest:
        return ssltk.ViewRequest(cameras=self.options.cameras, deltas=(ssltk.DeltaRange.parse(self.options.dt),))

    def masks(self, anchors: ssltk.Rows, keys: ssltk.Rows) -> ssltk.Masks:
        """``anchors``: this rank's rows; ``keys``: every rank's rows (the same rows with one process)."""
        partner = ssltk.same(anchors.sample, keys.sample) & ssltk.same(anchors.camera, keys.camera)
        partner &= ~ssltk.same(anchors.slot, keys.slot)
        close = ssltk.near(anchors.frame, anchors, keys, self.options.guard)
        return ssltk.Masks(positives=partner, exclude=close)
