"""Frozen feature extraction: one vector per (episode, timestep, camera).

An extractor maps a uint8 batch ``[B, 3, H, W]`` (already resized to its
``size``) to features ``[B, D]``. :class:`ModelExtractor` preprocesses like
training (scale to [0, 1], normalise with the bundle's mean/std) and runs the
backbone in eval mode under ``torch.inference_mode``; nothing is trained.
:class:`RawPixels` is the raw-pixel baseline (a ``16 × 16 × 3`` thumbnail).

:func:`extract` decodes each batch once per input size and feeds every
extractor that shares it, so the bundle and its random-init twins cost one
decode.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ssltk.probe.frames import FrameKey, FrameTable


class ModelExtractor:
    """A frozen backbone with its preprocessing."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        *,
        size: tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
        device: torch.device | str = "cpu",
    ) -> None:
        self.name = name
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation
        self.device = torch.device(device)
        # channels_last: same numbers, faster convolutions on CPU (a no-op for non-4D weights)
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1) * 255.0

    def __call__(self, frames: torch.Tensor) -> np.ndarray:
        x = ((frames.to(self.device).float() - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.model(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.reshape(len(frames), -1).float().cpu().numpy()


class RawPixels:
    """Raw-pixel baseline: an area-downsampled thumbnail, flattened, in [0, 1]."""

    def __init__(self, name: str = "raw_pixels", side: int = 16) -> None:
        self.name = name
        self.size = (side, side)
        self.interpolation = "area"

    def __call__(self, frames: torch.Tensor) -> np.ndarray:
        return (frames.float() / 255.0).reshape(len(frames), -1).numpy()


def extract(
    table: FrameTable,
    keys: Sequence[FrameKey],
    extractors: Sequence,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Features ``[len(keys), D]`` per extractor name, computed batch by batch."""
    out: dict[str, list[np.ndarray]] = {e.name: [] for e in extractors}
    groups: dict[tuple, list] = {}
    for e in extractors:
        groups.setdefault((e.size, e.interpolation), []).append(e)
    for (size, interp), members in groups.items():
        for lo in range(0, len(keys), batch_size):
            frames = table.decode(keys[lo : lo + batch_size], size, interp)
            for e in members:
                out[e.name].append(e(frames))
    return {name: (np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)) for name, parts in out.items()}
