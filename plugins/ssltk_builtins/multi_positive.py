"""Objective ``multi-positive``: SupCon over a short clip from every camera.

Supervised contrastive learning (Khosla et al., NeurIPS 2020, ``L_out``) with
labels that come for free from the data: each sample is a clip of ``clip``
timesteps ``stride`` frames apart, seen by the chosen cameras. Two rows are
positives when they come from the same episode and are at most ``window``
frames apart, whatever their camera or sample. Each anchor's loss is the mean
over its positives of ``-log softmax``; anchors with no valid positive
(missing frames, episode ends) are left out and counted (``anchors_no_pos``).
See ``docs/objectives/multi-positive.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ssltk import DeltaRange, UsageError, ViewRequest
from ssltk.contrastive import ContrastiveObjective, ContrastiveOptions, Masks, Rows, near, parse_cameras

__all__ = ["MultiPositive"]


@dataclass
class MultiPositiveOptions(ContrastiveOptions):
    """Options of ``multi-positive``."""

    clip: int = field(default=4, metadata={"help": "timesteps per sample: t, t+stride, ..., t+(clip-1)*stride"})
    stride: int = field(default=2, metadata={"help": "frames between clip timesteps"})
    window: int = field(default=2, metadata={"help": "same-episode rows at most this many frames apart are positives"})
    cameras: str = field(default="all", metadata={"help": "'all', 'anchor' or a comma-separated list of cameras"})
    guard: int = field(default=0, metadata={"help": "same-episode rows within guard (> window) frames are not negatives"})

    def validate(self) -> None:
        super().validate()
        parse_cameras(self.cameras)
        if self.clip < 1 or self.stride < 1 or self.window < 0 or self.guard < 0:
            raise UsageError(
                f"need clip >= 1, stride >= 1, window >= 0, guard >= 0; got clip={self.clip}, "
                f"stride={self.stride}, window={self.window}, guard={self.guard}"
            )


class MultiPositive(ContrastiveObjective):
    """SupCon L_out: same episode within a time window, any camera, are positives."""

    name = "multi-positive"
    Options = MultiPositiveOptions

    def views(self) -> ViewRequest:
        s = self.options.stride
        deltas = tuple(DeltaRange(i * s, i * s) for i in range(1, self.options.clip))
        return ViewRequest(cameras=parse_cameras(self.options.cameras), deltas=deltas)

    def masks(self, anchors: Rows, keys: Rows) -> Masks:
        pos = near(anchors.frame, anchors, keys, self.options.window)
        guard = self.options.guard
        exclude = near(anchors.frame, anchors, keys, guard) if guard > self.options.window else None
        return Masks(pos, exclude)
