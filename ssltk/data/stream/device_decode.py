"""Decode on the training device: workers send JPEG bytes, the main process decodes them in batches.

``--decode gpu`` (and ``auto`` on a CUDA run): the loader workers no longer decode. For every
cell of a batch they read the JPEG header, draw the crop box and the photometric plan exactly as
the CPU path would (:meth:`ssltk.data.stream.augment.FrameTransform.plan_many`, same generator, same
order, boxes in the coordinates of the CPU path's DCT-downscaled decode), and send the bytes
with those draws. The main process decodes the batch's distinct JPEGs with one
``torchvision.io.decode_jpeg(list, device=...)`` call (nvJPEG on CUDA), then crops (the box
mapped to full resolution), resizes (bilinear, antialiased) and augments
(:meth:`FrameTransform._apply`, device-generic) on the device. The batch's ``frames`` arrive
already on the device.

The same code runs with ``device="cpu"`` (the tests use it): its batches equal the CPU-decode
path's within JPEG tolerance (full-resolution decode + resize vs DCT-domain downscale).
Non-JPEG frames (PNG) are decoded in the worker and travel as tensors. A JPEG that fails to
decode on the device masks its cells (``mask`` False) and counts as ``corrupt_image``; the CPU
path drops the whole sample instead, which a batch already assembled cannot do.
"""

from __future__ import annotations

import random
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ssltk.data.stream.augment import FrameTransform, resize_uint8
from ssltk.data.stream.cells import Decode, Decoded
from ssltk.data.stream.decode import DecodeError, decode_jpeg
from ssltk.errors import UsageError

__all__ = ["resolve_decode", "DeviceDecoder", "PlanCells", "pack_cells"]

_JPEG_MAGIC = b"\xff\xd8"


def resolve_decode(name: str | None, device: torch.device) -> torch.device | None:
    """Where frames are decoded: None = in the loader workers (CPU), else this device.

    ``auto``: the training device when it is a GPU, else the workers. ``gpu`` needs CUDA and a
    CUDA training device; ``cpu`` always decodes in the workers.
    """
    choice = (name or "auto").lower()
    if choice not in ("auto", "cpu", "gpu"):
        raise UsageError(f"--decode {name!r}: use auto, cpu or gpu")
    if choice == "cpu" or (choice == "auto" and device.type != "cuda"):
        return None
    if choice == "auto":
        return device
    if not torch.cuda.is_available():
        raise UsageError("--decode gpu: CUDA is not available on this machine; use --decode cpu or auto")
    if device.type != "cuda":
        raise UsageError(f"--decode gpu decodes on the training GPU, but this run trains on {device}; use --device cuda or --decode cpu")
    return device


@dataclass
class _Pending:
    """One cell to finish on the device: its source, crop box at full resolution, plan, mirror flag."""

    source: Any  # JPEG bytes, or a uint8 [3, H, W] tensor decoded in the worker (non-JPEG)
    box: tuple[int, int, int]
    plan: dict[str, Any]
    mirror: bool = False


def _probe(data: bytes, size: int) -> tuple[tuple[int, int], tuple[int, int], Any]:
    """``((h, w) the CPU path decodes at, (H, W) full size, source)`` of one frame's bytes."""
    if data[:2] == _JPEG_MAGIC:
        import simplejpeg

        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data, min_height=size, min_width=size)
            full_h, full_w, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exn:
            raise DecodeError(f"corrupt JPEG header ({exn})") from None
        return (h, w), (full_h, full_w), data
    img = decode_jpeg(data, size)  # PNG: decoded here, at full size
    return tuple(img.shape[-2:]), tuple(img.shape[-2:]), img.contiguous()


def _full_box(box: tuple[int, int, int], scaled: tuple[int, int], full: tuple[int, int]) -> tuple[int, int, int]:
    top, left, side = box
    sy, sx = full[0] / scaled[0], full[1] / scaled[1]
    t, l_ = round(top * sy), round(left * sx)
    return t, l_, max(1, min(round(side * sy), full[0] - t, full[1] - l_))


class PlanCells(Decode):
    """:class:`~ssltk.data.stream.cells.Decode` for the device-decode path: each cell is planned
    (its bytes and the CPU path's random draws, in the CPU path's order), decoded in the main process."""

    def read(self, data: bytes) -> tuple[tuple[int, int], tuple[int, int], Any]:
        return _probe(data, self.size)

    def draw(self, frames: list[Any], rng: random.Random, samples: list[int] | None = None) -> list[Any]:
        return self.transform.plan_many([scaled for scaled, _, _ in frames], rng, samples)

    def cell(self, frame: Any, drawn: Any) -> _Pending:
        (scaled, full, source), (box, plan) = frame, drawn
        return _Pending(source, _full_box(box, scaled, full), plan)

    def mirror_cell(self, cell: _Pending) -> _Pending:
        return replace(cell, mirror=True)  # the frame is flipped once decoded


def pack_cells(items: list[Decoded], valid: np.ndarray) -> dict[str, Any]:
    """The batch fields of planned cells: distinct ``sources``, ``cells`` rows and ``plans``; sets ``valid``."""
    sources: list[Any] = []
    index: dict[int, int] = {}
    rows, plans = [], []
    for b, item in enumerate(items):
        for t, v, p in item.cells:
            key = id(p.source)
            if key not in index:
                index[key] = len(sources)
                sources.append(p.source)
            rows.append((b, t, v, index[key], *p.box, int(p.mirror)))
            plans.append(p.plan)
            valid[b, t, v] = True
    return {"sources": sources, "cells": np.array(rows, dtype=np.int64).reshape(-1, 8), "plans": plans}


class DeviceDecoder:
    """Main-process half: decode a batch's ``sources`` on ``device`` and build its ``frames`` there."""

    def __init__(self, device: torch.device | str, image_size: int) -> None:
        self.device, self.size = torch.device(device), image_size

    def decode(self, sources: list[Any]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_decode

        out: list[torch.Tensor | None] = [None] * len(sources)
        jpegs = [i for i, s in enumerate(sources) if isinstance(s, (bytes, bytearray))]
        for i, s in enumerate(sources):
            if i not in jpegs:
                out[i] = s.to(self.device, non_blocking=True)
        data = [torch.frombuffer(bytearray(sources[i]), dtype=torch.uint8) for i in jpegs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec
            try:
                decoded = tv_decode(data, mode=ImageReadMode.RGB, device=self.device) if data else []
            except RuntimeError:  # one bad JPEG fails the batch call: decode one by one
                decoded = []
                for d in data:
                    try:
                        decoded.append(tv_decode(d, mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError:
                        decoded.append(None)
        for i, img in zip(jpegs, decoded):
            out[i] = img
        return out

    def _resize(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[-1] == self.size and img.shape[-2] == self.size:
            return img
        if img.device.type == "cpu":
            return resize_uint8(img, self.size)
        x = torch.nn.functional.interpolate(img.unsqueeze(0).float(), size=(self.size, self.size), mode="bilinear",
                                            antialias=True, align_corners=False)  # fmt: skip
        return x[0].round_().clamp_(0, 255).to(torch.uint8)

    def finish(self, batch: dict[str, Any], skipped: Counter) -> dict[str, Any]:
        """Replace the batch's ``sources``/``cells``/``plans`` by ``frames`` on the device; updates ``mask``."""
        sources, cells, plans = batch.pop("sources"), batch.pop("cells"), batch.pop("plans")
        mask = batch["mask"]
        images = self.decode(sources)
        B, T, V = mask.shape
        frames = torch.zeros((B, T, V, 3, self.size, self.size), dtype=torch.uint8, device=self.device)
        kept, crops, kept_plans = [], [], []
        for row, plan in zip(cells.tolist(), plans):
            b, t, v, s, top, left, side, mirror = row
            img = images[s]
            if img is None:
                mask[b, t, v] = False
                skipped["corrupt_image"] += 1
                continue
            kept.append((b, t, v, mirror))
            crops.append(self._resize(img[:, top : top + side, left : left + side]))
            kept_plans.append(plan)
        for (b, t, v, mirror), img in zip(kept, FrameTransform._apply(crops, kept_plans)):
            frames[b, t, v] = img.flip(-1) if mirror else img
        batch["frames"] = frames
        return batch
