"""Objective ``per-frame``: SimCLR on single frames (two augmentations are positives).

Chen et al., "A Simple Framework for Contrastive Learning of Visual
Representations" (ICML 2020). Each anchor frame is seen twice, independently
augmented (``t`` and ``t:aug``); the two copies are positives, every other row
of the batch (all ranks with ``gather``) is a negative. With ``2N`` rows this
is NT-Xent: ``2N`` anchors, one positive and ``2N - 2`` negatives each.
Other samples of the very same frame (same episode and ``frame_index``, which
happens when several samples are drawn from one segment) are not negatives;
``guard`` widens that window, ``guard=-1`` gives textbook SimCLR.
See ``docs/objectives/per-frame.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssltk import UsageError, ViewRequest
from ssltk.contrastive import ContrastiveObjective, ContrastiveOptions, Masks, Rows, near, parse_cameras, same

__all__ = ["PerFrame"]


@dataclass
class PerFrameOptions(ContrastiveOptions):
    """Options of ``per-frame``."""

    cameras: str = field(default="anchor", metadata={"help": "'anchor', 'all' or names; each camera is its own view"})
    guard: int = field(default=0, metadata={"help": "same-episode rows within this many frames are not negatives (-1: none)"})

    def validate(self) -> None:
        super().validate()
        parse_cameras(self.cameras)
        if self.guard < -1:
            raise UsageError(f"guard must be >= 0 frames, or -1 for none; got {self.guard}")


class PerFrame(ContrastiveObjective):
    """SimCLR NT-Xent: two augmentations of the same frame are positives."""

    name = "per-frame"
    Options = PerFrameOptions

    def views(self) -> ViewRequest:
        return ViewRequest(cameras=parse_cameras(self.options.cameras), augmented_copy=True)

    def masks(self, anchors: Rows, keys: Rows) -> Masks:
        # Positive: the same sample and camera in the other slot (t <-> t:aug).
        pos = same(anchors.sample, keys.sample)
        pos &= same(anchors.camera, keys.camera)
        pos &= ~same(anchors.slot, keys.slot)
        guard = self.options.guard
        return Masks(pos, near(anchors.frame, anchors, keys, guard) if guard >= 0 else None)
