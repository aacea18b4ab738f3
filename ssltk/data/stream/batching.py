"""The last worker stage: groups -> contract batches (``docs/batch_contract.md``) with skip counts.

:class:`Batch` flattens decoded groups into batches of ``batch_size`` samples,
copies each cell into a ``[B, T, V, 3, S, S]`` uint8 tensor as its group arrives (in shared
memory inside a DataLoader worker; once, except in a last partial batch) and attaches the
worker's ``skipped`` counts; after the last batch a :data:`COUNTS_ONLY` record carries the skips
that came after it. :func:`small_fields_as_tensors` turns the small numpy
fields back into the contract's tensors in the main process.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch

from ssltk.batch import episode_id
from ssltk.data.stream.cells import Decoded
from ssltk.data.stream.device_decode import pack_cells
from ssltk.data.stream.stages import Context
from ssltk.views import ViewPlan

__all__ = ["COUNTS_ONLY", "Batch", "small_fields_as_tensors"]

COUNTS_ONLY = "__counts_only__"  # marks the end-of-stream record that carries only skip counts


class Batch:
    """Flatten groups into batches of ``batch_size`` contract dicts (the last partial one if ``partial``)."""

    def __init__(
        self, ctx: Context, plan: ViewPlan, batch_size: int, image_size: int, partial: bool, ego_fields: list[str]
    ) -> None:
        self.ctx, self.plan, self.batch_size, self.partial = ctx, plan, batch_size, partial
        self.image_size, self.ego_fields = image_size, ego_fields
        self.bytes_mode = False  # True: cells are planned JPEG bytes, decoded in the main process (device_decode)

    def __call__(self, src: Iterator[list[Decoded]]) -> Iterator[dict[str, Any]]:
        buf: list[Decoded] = []
        filling = None  # the batch's frames, filled group by group (not in bytes mode)
        for group in src:
            for item in group:
                if not self.bytes_mode:
                    if filling is None:
                        filling = _Filling((self.batch_size, len(self.plan.slots), len(self.plan.cameras), 3,
                                            self.image_size, self.image_size))  # fmt: skip
                    filling.add(len(buf), item)
                buf.append(item)
                if len(buf) == self.batch_size:
                    yield self.collate(buf, filling)
                    buf, filling = [], None
        if buf and self.partial:
            yield self.collate(buf, filling)
        pending = self.ctx.counter.take()
        if any(pending.values()):  # skips after this worker's last batch: a counts-only record
            yield {COUNTS_ONLY: True, "skipped": pending}

    def collate(self, items: list[Decoded], filling: "_Filling | None" = None) -> dict[str, Any]:
        """The contract batch of ``items``; ``filling``: their frames, already copied in (else copied now)."""
        T, V, S = len(self.plan.slots), len(self.plan.cameras), self.image_size
        if self.bytes_mode:
            valid = np.zeros((len(items), T, V), dtype=bool)
            return self._fields(items, None, valid, pack_cells(items, valid))
        if filling is None:
            filling = _Filling((len(items), T, V, 3, S, S))
            for b, item in enumerate(items):
                filling.add(b, item)
        frames, valid = filling.finish(len(items))
        return self._fields(items, frames, valid, {})

    def _fields(self, items: list, frames: Any, valid: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
        T = len(self.plan.slots)
        views = [it.view for it in items]
        # The small fields travel as numpy arrays, pickled by value: a worker sends every
        # tensor through its own shared-memory file and socket handshake (~0.4 ms each in
        # the main process, measured), which only pays off for ``frames``.
        # :func:`small_fields_as_tensors` turns them back into the contract's tensors.
        return {
            "frames": frames,
            "mask": valid,
            "episode": np.array([[episode_id(v.episode)] * T for v in views], dtype=np.int64),
            "frame_index": np.array([v.frame_index for v in views], dtype=np.int64),
            "timestamp": np.array([v.timestamp for v in views], dtype=np.float64),
            "dt": np.array([v.dt for v in views], dtype=np.float32),
            "slots": list(self.plan.slots),
            "cameras": list(self.plan.cameras),
            "ego": {f: np.array([v.ego[f] for v in views], dtype=np.float32) for f in self.ego_fields},
            "keys": [v.key for v in views],
            "skipped": self.ctx.counter.take(),
            **extra,
        }


def small_fields_as_tensors(batch: dict[str, Any], pin: bool) -> dict[str, Any]:
    """The batch as the contract has it: the numpy fields of :meth:`Batch.collate` as tensors.

    ``pin``: pin them too (the DataLoader's pinning step passes numpy arrays through), so every
    field's copy to the GPU can be asynchronous.
    """

    def tensor(a: Any) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory() if pin else t

    for name in ("mask", "episode", "frame_index", "timestamp", "dt"):
        batch[name] = tensor(batch[name])
    batch["ego"] = {f: tensor(v) for f, v in batch["ego"].items()}
    return batch


class _Filling:
    """A batch's ``frames`` being filled: each sample's cells are copied in when its group arrives.

    Copying while the cells are still in cache (just resized and augmented) instead of once the
    batch is complete: ~11 us per 128-px cell (copy and finish) against ~17 us for the copy from
    memory (measured in the loader, 1 thread).
    Each cell (planar from the photometric kernel, channels-last from the resize kernel) is
    copied once (a last partial batch: once more, into its own smaller tensor), by numpy, into
    the contract's ``[3, S, S]`` layout: ~3x faster for uint8 than
    torch's permuting copy or stack.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.frames = _batch_tensor(shape)
        self.out = self.frames.numpy()
        self.valid = np.zeros(shape[:3], dtype=bool)

    def add(self, b: int, item: Decoded) -> None:
        for t, v, img in item.cells:
            np.copyto(self.out[b, t, v], img.numpy())
            self.valid[b, t, v] = True

    def finish(self, n: int) -> tuple[torch.Tensor, np.ndarray]:
        """``(frames, valid)`` of the first ``n`` samples; cells without a frame are zero."""
        frames, valid = self.frames, self.valid[:n]
        if n < len(self.valid):  # a last partial batch: its own tensor, not a view of the full one
            frames = _batch_tensor((n, *frames.shape[1:]))
            frames.copy_(self.frames[:n])
            valid = valid.copy()
        frames.numpy()[~valid] = 0
        return frames, valid


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 tensor; inside a DataLoader worker, in shared memory (as ``default_collate`` does).

    A batch built anywhere else (e.g. from a numpy array) is copied into shared
    memory or pickled by value on its way to the main process: measured 20 %
    fewer frames/s with 2 workers on 2 cores.
    """
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
