"""Frozen feature extraction: one vector per (episode, timestep, camera).

An extractor maps a uint8 batch ``[B, 3, H, W]`` (already resized to its
``size``) to features ``[B, D]``. :class:`ModelExtractor` preprocesses like
training (scale to [0, 1], normalise with the bundle's mean/std) and runs the
backbone in eval mode under ``torch.inference_mode``; nothing is trained.
:class:`RawPixels` is the raw-pixel baseline (a ``16 × 16 × 3`` thumbnail).

Readouts (``READOUTS``), the same for every model column:

* ``"gap"`` (default): the backbone's own pooled output (global average
  pooling for timm CNNs), as a downstream head would see it;
* ``"grid"``: the last feature map average-pooled to a 2 × 2 grid and
  flattened (``4·C`` features): where lane lines and the horizon are survives.

A model without a spatial feature map (no ``forward_features``, or tokens
that do not form a square grid) falls back to ``"gap"``; the extractor's
``readout`` attribute says what was used.

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


READOUTS = ("gap", "grid")
GRID = 2  # cells per side of the pooled grid


class ModelExtractor:
    """A frozen backbone with its preprocessing and readout."""

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
        readout: str = "gap",
    ) -> None:
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; use one of {READOUTS}")
        self.name = name
        self.readout = readout if readout == "gap" or hasattr(model, "forward_features") else "gap"
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
            y = self._grid(x) if self.readout == "grid" else self.model(x)
            if y is None:  # no spatial map after all: the pooled output, from now on
                self.readout = "gap"
                y = self.model(x)
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.reshape(len(frames), -1).float().cpu().numpy()

    def _grid(self, x: torch.Tensor) -> torch.Tensor | None:
        """``[B, GRID·GRID·C]`` from the last feature map, or None if it is not spatial."""
        f = self.model.forward_features(x)
        if isinstance(f, (tuple, list)):
            f = f[-1]
        if f.ndim == 3:  # tokens [B, N, C]: drop prefix tokens, fold the rest into a square grid
            tokens = f[:, int(getattr(self.model, "num_prefix_tokens", 0) or 0) :]
            side = int(round(tokens.shape[1] ** 0.5))
            if side * side != tokens.shape[1] or side < GRID:
                return None
            f = tokens.transpose(1, 2).reshape(len(x), -1, side, side)
        elif f.ndim == 4:
            if str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC"):
                f = f.permute(0, 3, 1, 2)
        else:
            return None
        return torch.nn.functional.adaptive_avg_pool2d(f.float(), GRID).flatten(1)


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
