"""Objective ``temporal-infonce``: a frame and the same camera ``Δt`` later are positives.

Temporal InfoNCE in the spirit of CPC (van den Oord et al., 2018) and
time-contrastive networks (Sermanet et al., "Time-Contrastive Networks",
ICRA 2018): the anchor frame ``t`` and the frame ``t + Δt`` of the same episode
and camera are a positive pair; the other rows of the batch are negatives.
Rows of the *same episode* within ``guard`` frames of the anchor or of its
positive look nearly the same and are left out of the denominator (TCN's
false negatives); same-episode rows farther away stay in as hard negatives.

``symmetric=true`` (default) uses both rows of every pair as anchors, which is
NT-Xent on the pair and compares with other toolkits; ``symmetric=false``
uses only the ``t`` rows as anchors (keys are unchanged).
See ``docs/objectives/temporal-infonce.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssltk import DeltaRange, UsageError, ViewRequest
from ssltk.contrastive import ContrastiveObjective, ContrastiveOptions, Masks, Rows, near, parse_cameras, same

__all__ = ["TemporalInfoNCE"]


@dataclass
class TemporalOptions(ContrastiveOptions):
    """Options of ``temporal-infonce``."""

    dt: str = field(default="2-10", metadata={"help": "Δt range of the positive: frames '2-10' or seconds '0.2s-1s'"})
    camera: str = field(default="anchor", metadata={"help": "camera of anchor and positive: 'anchor', 'all' or names"})
    guard: int = field(default=2, metadata={"help": "same-episode rows within this many frames of anchor/positive are not negatives"})
    symmetric: bool = field(default=True, metadata={"help": "both rows of a pair are anchors (NT-Xent); false: only t"})

    def validate(self) -> None:
        super().validate()
        DeltaRange.parse(self.dt)
        parse_cameras(self.camera)
        if self.guard < 0:
            raise UsageError(f"guard must be >= 0 frames, got {self.guard}")


class TemporalInfoNCE(ContrastiveObjective):
    """Temporal InfoNCE: frame t and t+Δt of the same camera are positives (TCN-style guard)."""

    name = "temporal-infonce"
    Options = TemporalOptions

    def views(self) -> ViewRequest:
        return ViewRequest(cameras=parse_cameras(self.options.camera), deltas=(DeltaRange.parse(self.options.dt),))

    def masks(self, anchors: Rows, keys: Rows) -> Masks:
        # Positive: the same sample and camera in the other slot (t <-> t+Δt).
        pos = same(anchors.sample, keys.sample)
        pos &= same(anchors.camera, keys.camera)
        pos &= ~same(anchors.slot, keys.slot)
        # Not negatives: same episode and within `guard` frames of the anchor or of its positive.
        g = self.options.guard
        exclude = near(anchors.frame, anchors, keys, g)
        exclude |= near(anchors.partner("frame"), anchors, keys, g)
        only_t = None if self.options.symmetric else anchors.slot == 0
        return Masks(pos, exclude, only_t)
