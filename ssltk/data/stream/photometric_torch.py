"""The torch path of the photometric augmentations: GPU frames, hue, and CPUs without the kernel.

:func:`apply` computes what :mod:`ssltk.data.stream.photometric`'s compiled kernel computes
(torchvision's ``v2.functional`` definitions in float, each op with its clamp to [0, 255]) with
torch ops, on any device. :meth:`ssltk.data.stream.augment.FrameTransform._apply` sends a frame
here when it is not on the CPU, its plan has hue, or the kernel is unavailable
(``SSLTK_PHOTOMETRIC=torch``, no numba). Both agree within 1 per channel
(``tests/test_photometric_kernel.py``).

Brightness, contrast, saturation and grayscale are per-pixel affine colour maps, and an op with
factor <= 1 maps [0, 255] into itself (a convex blend), so its clamp is a no-op: such ops are
composed into one 3x3 matrix + offset (:class:`_ColourMap`; contrast's mean follows analytically
from the per-channel means) and applied in one matrix product; only an op with factor > 1 that
is followed by another op is applied (and clamped) on its own. The previous version converted
the frame to float and ran 3-7 torch calls per op.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

__all__ = ["apply", "gaussian_blur"]

_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, torchvision's rgb_to_grayscale weights
_EYE = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _mm3(a, b):
    return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))


def _mv3(a, v):
    return tuple(sum(a[i][k] * v[k] for k in range(3)) for i in range(3))


class _ColourMap:
    """A pending ``y = M @ x + c`` per pixel, relative to the float ``[3, S, S]`` buffer ``x``."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x, self.m, self.c, self.mean = x, _EYE, (0.0, 0.0, 0.0), None

    @property
    def identity(self) -> bool:
        return self.m == _EYE and self.c == (0.0, 0.0, 0.0)

    def then(self, a, d=(0.0, 0.0, 0.0)) -> None:
        """Compose ``z = a @ y + d`` after the pending map."""
        self.m = _mm3(a, self.m)
        self.c = tuple(v + dv for v, dv in zip(_mv3(a, self.c), d))

    def scale(self, f: float, d: float = 0.0) -> None:
        """Compose ``z = f * y + d`` (brightness, contrast)."""
        self.m = tuple(tuple(f * v for v in row) for row in self.m)
        self.c = tuple(f * v + d for v in self.c)

    def gray_mean(self) -> float:
        """Mean grey level of ``y`` (torchvision's contrast pivot), from ``x``'s per-channel means."""
        if self.mean is None:
            self.mean = tuple(float(v) for v in self.x.view(3, -1).mean(1).tolist())
        y = tuple(v + c for v, c in zip(_mv3(self.m, self.mean), self.c))
        return sum(w * v for w, v in zip(_LUMA, y))

    def materialise(self, clamp: bool) -> torch.Tensor:
        if not self.identity:
            mc = torch.from_numpy(np.array([r + (v,) for r, v in zip(self.m, self.c)], dtype=np.float32))
            mc = mc.to(self.x.device)  # [3, 4]: M | c (numpy: ~10x cheaper than torch.tensor on a nested list)
            m, c = mc[:, :3], mc[:, 3:]
            # one GEMM (K = 3) over the CHW planes: ~55 us at 128 px vs ~300 us for 9 axpy calls
            self.x = torch.addmm(c, m, self.x.view(3, -1)).view(self.x.shape)
            self.m, self.c, self.mean = _EYE, (0.0, 0.0, 0.0), None
        if clamp:
            self.x.clamp_(0, 255)
            self.mean = None
        return self.x


def gaussian_blur(x: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """``v2.functional.gaussian_blur(x, [k, k], [sigma, sigma])`` of a float ``[3, H, W]`` frame.

    The same kernel (torchvision's 1-D Gaussian, outer product) and the same reflect padding,
    applied as two matrix products with banded ``[n, n]`` matrices that fold the padding in.
    Measured at 128 px, 1 thread: torchvision's depthwise conv2d 6.4 ms for k = 11 (1.5 ms for
    k = 5), the separable depthwise conv 2.7 ms; the two GEMMs ~0.1 ms. Same values within 1e-4.
    """
    lim = (k - 1) / (2.0 * math.sqrt(2.0))
    w = torch.softmax(torch.linspace(-lim, lim, k, device=x.device).div(sigma).pow(2).neg(), dim=0)

    def band(n: int) -> torch.Tensor:  # out[j] = sum_t w[t] * in[reflect(j + t - k // 2)]
        idx = torch.arange(n, device=x.device)[:, None] + torch.arange(k, device=x.device)[None, :] - k // 2
        idx = torch.where(idx < 0, -idx, idx)
        idx = torch.where(idx > n - 1, 2 * (n - 1) - idx, idx)
        m = torch.zeros(n, n, device=x.device)
        return m.index_put_((torch.arange(n, device=x.device)[:, None].expand(n, k), idx), w.expand(n, k), accumulate=True)

    c, h, wd = x.shape
    x = x.reshape(c * h, wd) @ band(wd).T  # along each row
    return torch.matmul(band(h), x.view(c, h, wd))  # along each column


def apply(img: torch.Tensor, p: dict[str, Any]) -> torch.Tensor:
    """The photometric ops of plan ``p`` (``FrameTransform._draw``) on a uint8 ``[3, S, S]`` frame, in torch."""
    ops = list(p["jitter"]) + ([("gray", None)] if p["gray"] else []) + ([("blur", p["blur"])] if p["blur"] else [])
    src = img.flip(-1) if p["flip"] else img
    if src.device.type == "cpu":  # numpy's strided uint8 -> float32 CHW copy: ~80 us at 128 px vs ~220 us in torch
        x = torch.from_numpy(src.numpy().astype(np.float32, order="C"))
    else:
        x = torch.empty(src.shape, dtype=torch.float32, device=src.device).copy_(src)
    cm = _ColourMap(x)
    for n, (name, arg) in enumerate(ops):
        last = n == len(ops) - 1
        if name == "brightness":
            cm.scale(arg)
        elif name == "contrast":
            cm.scale(arg, (1 - arg) * cm.gray_mean())
        elif name == "saturation":
            cm.then(tuple(tuple((arg if i == j else 0.0) + (1 - arg) * _LUMA[j] for j in range(3)) for i in range(3)))
        elif name == "gray":
            cm.then((_LUMA, _LUMA, _LUMA))
        elif name == "hue":
            y = cm.materialise(clamp=False)
            cm.x = F.adjust_hue(y / 255, arg) * 255
            continue
        elif name == "blur":
            k, sigma = arg
            cm.x = gaussian_blur(cm.materialise(clamp=False), k, sigma)
            continue
        if name in ("brightness", "contrast", "saturation") and arg > 1 and not last:
            cm.materialise(clamp=True)  # the only clamp that is not a no-op; the final one follows below
    y = cm.materialise(clamp=False).round_().clamp_(0, 255)
    if y.device.type == "cpu":
        # numpy's float32 -> uint8 cast: ~25 us at 128 px vs ~150 us for torch's .to(torch.uint8)
        return torch.from_numpy(y.numpy().astype(np.uint8))
    return y.to(torch.uint8)
