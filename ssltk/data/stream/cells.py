"""The decode stage: a group's frames decoded once each, then every cell cropped, resized and augmented.

A *cell* is one ``[slot][camera]`` place of a sample that has a frame.
:class:`Decode` turns a group of :class:`~ssltk.data.stream.sampling.RawView`
(the samples of one segment) into :class:`Decoded` samples in four steps that the
device-decode path (:class:`ssltk.data.stream.device_decode.PlanCells`) shares,
overriding only what a frame becomes (:meth:`Decode.read`), what a cell's draws
give (:meth:`Decode.draw`, :meth:`Decode.cell`) and how a cell is mirrored:

1. each distinct ``(timestep, camera)`` of the group is read once; a sample with
   a frame that cannot be read is dropped and counted (``corrupt_image``);
2. the cells of the kept samples, in sample, slot, camera order;
3. the random draws: with augmentation off one per distinct frame (no draws
   per cell, so a frame shared by cells is also resized once), else one per
   cell in cell order (as one transform call per cell would);
4. the rig flip (``AugmentConfig.rig_flip_p``) per sample.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Iterator


from ssltk.data.stream.augment import MIRRORED_EGO, FrameTransform, rig_mirror
from ssltk.data.stream.decode import DecodeError, decode_jpeg
from ssltk.data.stream.sampling import RawView
from ssltk.data.stream.stages import Context

__all__ = ["Decoded", "Decode"]


@dataclass
class Decoded:
    view: RawView
    cells: list[tuple[int, int, Any]]  # (slot, camera, uint8 [3, S, S]) for every valid cell (device path: planned)


class Decode:
    """Decode a group's frames once each, then crop/resize/augment every cell of every sample."""

    def __init__(self, ctx: Context, image_size: int, transform: FrameTransform, cameras: list[str]) -> None:
        self.ctx, self.size, self.transform = ctx, image_size, transform
        self.reuse = not transform.config.enabled
        self.flip_p = transform.config.rig_flip_p if transform.config.enabled else 0.0
        self.mirror = rig_mirror(list(cameras)) if self.flip_p else []

    def read(self, data: bytes) -> Any:
        """One frame's bytes -> what its cells are made from (raises DecodeError)."""
        return decode_jpeg(data, self.size)

    def draw(self, frames: list[Any], rng: random.Random, samples: list[int] | None = None) -> list[Any]:
        """The cells of these frames (``samples``: the sample of each), drawing from ``rng`` in order."""
        return self.transform.many(frames, rng, samples)

    def cell(self, frame: Any, drawn: Any) -> Any:
        return drawn

    def mirror_cell(self, cell: Any) -> Any:
        return cell.flip(-1)

    def _read_group(self, group: list[RawView]) -> dict:
        frames: dict = {}
        for view in group:
            for ref, data in view.images.items():
                if ref in frames:
                    continue
                try:
                    frames[ref] = self.read(data)
                except DecodeError as exn:
                    frames[ref] = None
                    self.ctx.counter.skip("corrupt_image", view.url, view.key, f"f{ref[0]:03d}.{ref[1]}: {exn}")
        return frames

    def _mirrored(self, d: Decoded) -> Decoded:
        """The sample seen by the mirrored rig (``AugmentConfig.rig_flip_p``)."""
        ego = {k: ([-x for x in v] if k in MIRRORED_EGO else v) for k, v in d.view.ego.items()}
        cells = [(t, self.mirror[v], self.mirror_cell(c)) for t, v, c in d.cells]
        return Decoded(dataclasses.replace(d.view, ego=ego), cells)

    def __call__(self, src: Iterator[list[RawView]]) -> Iterator[list[Decoded]]:
        rng = self.ctx.rng
        for group in src:
            frames = self._read_group(group)
            views = [view for view in group if all(frames[ref] is not None for ref in view.images)]  # else corrupt
            cells = [(i, t, v, ref) for i, view in enumerate(views) for t, row in enumerate(view.refs)
                     for v, ref in enumerate(row) if ref is not None]  # fmt: skip
            if self.reuse:  # no random draws per cell: each distinct frame once, same shapes together
                refs = list(dict.fromkeys(ref for *_, ref in cells))
                done = dict(zip(refs, self.draw([frames[ref] for ref in refs], rng)))
                drawn = [done[ref] for *_, ref in cells]
            else:  # every cell its own draws, in cell order
                drawn = self.draw([frames[ref] for *_, ref in cells], rng, [i for i, *_ in cells])
            out = [Decoded(view, []) for view in views]
            for (i, t, v, ref), d in zip(cells, drawn):
                out[i].cells.append((t, v, self.cell(frames[ref], d)))
            if self.flip_p:
                out = [self._mirrored(d) if rng.random() < self.flip_p else d for d in out]
            if out:
                self.ctx.shards_since_output = 0
                yield out
