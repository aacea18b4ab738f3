"""Objective ``multi-camera``: one timestep seen by different cameras are positives.

Contrastive multiview coding (Tian et al., "Contrastive Multiview Coding",
ECCV 2020) and the multi-view form of time-contrastive networks (Sermanet et
al., ICRA 2018): the frames of one timestep from all ``V`` cameras form a
positive set (``V - 1`` positives per anchor, SupCon ``L_out``), every other
timestep in the batch is a negative. Same-episode rows within ``guard`` frames
(but not the same timestep) can be left out of the denominator.
See ``docs/objectives/multi-camera.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssltk import UsageError, ViewRequest
from ssltk.contrastive import ContrastiveObjective, ContrastiveOptions, Masks, Rows, near, parse_cameras

__all__ = ["MultiCamera"]


@dataclass
class MultiCameraOptions(ContrastiveOptions):
    """Options of ``multi-camera``."""

    cameras: str = field(default="all", metadata={"help": "'all' or a comma-separated list of >= 2 cameras"})
    guard: int = field(default=0, metadata={"help": "same-episode rows within this many frames are not negatives"})

    def validate(self) -> None:
        super().validate()
        cams = parse_cameras(self.cameras)
        if cams == "anchor" or (isinstance(cams, tuple) and len(cams) < 2):
            raise UsageError(f"multi-camera needs 'all' or at least two cameras, got {self.cameras!r}")
        if self.guard < 0:
            raise UsageError(f"guard must be >= 0 frames, got {self.guard}")


class MultiCamera(ContrastiveObjective):
    """Multi-camera contrast (CMC/TCN): the same timestep from other cameras are positives."""

    name = "multi-camera"
    Options = MultiCameraOptions

    def views(self) -> ViewRequest:
        return ViewRequest(cameras=parse_cameras(self.options.cameras))

    def masks(self, anchors: Rows, keys: Rows) -> Masks:
        # Positive: same episode and frame (any camera, any sample); the kernel drops the row itself.
        pos = near(anchors.frame, anchors, keys, 0)
        exclude = near(anchors.frame, anchors, keys, self.options.guard) if self.options.guard > 0 else None
        return Masks(pos, exclude)
