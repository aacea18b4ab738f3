"""The CPU kernel of the photometric augmentations: one compiled pass per frame (numba).

:meth:`ssltk.data.stream.augment.FrameTransform._apply` runs brightness, contrast,
saturation, grayscale and Gaussian blur with torchvision's definitions. In torch
they cost more than decoding the JPEG (measured, 1 thread, 128 px: ~200-400 us per
frame for the fused torch version against ~650 us to decode a 384x216 frame; the
per-op ``v2.functional`` calls ~1 ms), because each op is a few small tensor
calls with their dispatch and a float copy of the frame. Written as one loop over
the pixels and compiled with numba, the same arithmetic costs ~10-30 us per frame
(``benchmarks/bench_pipeline.py --augment``, docs/performance.md). That is the
measured reason this module is hand-written.

What it computes, per frame (uint8 HWC in, the decoder's and resize kernel's layout; uint8 CHW out):

* the colour ops (``brightness``, ``contrast``, ``saturation``, ``gray``) are
  composed into one 3x3 matrix + offset per pixel; contrast's pivot (the mean
  grey level of the image at that point) follows from the per-channel means of
  the current buffer through the pending map;
* a ``clamp`` op applies the pending map and clamps to [0, 255] (placed by
  :func:`encode` after an op with factor > 1 that is followed by another op:
  the only clamps of torchvision's float chain that are not no-ops);
* ``blur`` applies the pending map, then torchvision's Gaussian kernel
  (separable, reflect padding) — always the last op, as in :class:`v2.Compose`
  order: jitter, grayscale, blur;
* the result is rounded (half up) and clamped to uint8.

Hue needs an HSV round trip and is not in the kernel: plans with hue go to the
torch path (:func:`encode` returns ``None``). Without numba installed (or with
``SSLTK_PHOTOMETRIC=torch``) :data:`AVAILABLE` is false and the torch path runs
everywhere; the results agree within 1 per channel (``tests/test_augment.py``).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

__all__ = ["AVAILABLE", "warm", "encode", "apply", "blur_weights"]

try:  # numba is a dependency; the torch path stays for GPUs, hue, and platforms without numba wheels
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

AVAILABLE = numba is not None and os.environ.get("SSLTK_PHOTOMETRIC", "auto") != "torch"

BRIGHTNESS, CONTRAST, SATURATION, GRAY, CLAMP, BLUR = range(6)
_CODES = {"brightness": BRIGHTNESS, "contrast": CONTRAST, "saturation": SATURATION}
_LUMA = (0.2989, 0.587, 0.114)  # ITU-R 601-2, torchvision's rgb_to_grayscale weights


def blur_weights(k: int, sigma: float) -> np.ndarray:
    """torchvision's 1-D Gaussian kernel (``v2.functional.gaussian_blur``): ``k`` float32 weights."""
    lim = (k - 1) / 2.0
    w = [math.exp(-0.5 * ((i - lim) / sigma) ** 2) for i in range(k)]  # plain floats: ~5x numpy's cost at k <= 11
    total = sum(w)
    return np.array([v / total for v in w], dtype=np.float32)


def encode(plan: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """A plan (``FrameTransform._draw``) as the kernel's ``(ops [n, 2], blur weights)``; ``None`` if it has hue."""
    jitter, gray, blur = plan["jitter"], plan["gray"], plan["blur"]
    last = len(jitter) - 1 + bool(gray) + bool(blur)  # index of the plan's last op
    ops: list[tuple[float, float]] = []
    for n, (name, factor) in enumerate(jitter):
        code = _CODES.get(name)
        if code is None:  # hue: the torch path
            return None
        ops.append((code, factor))
        if factor > 1 and n < last:
            ops.append((CLAMP, 0.0))
    if gray:
        ops.append((GRAY, 0.0))
    if blur:
        ops.append((BLUR, 0.0))
        return np.array(ops, dtype=np.float64).reshape(-1, 2), blur_weights(*blur)
    return np.array(ops, dtype=np.float64).reshape(-1, 2), _NO_WEIGHTS


_NO_WEIGHTS = np.zeros(0, dtype=np.float32)  # shared: the kernel reads weights only for blur, never writes them


_warmed = False


def warm() -> bool:
    """Compile (or load from numba's on-disk cache) the kernel now; whether it is usable.

    :class:`~ssltk.data.stream.augment.FrameTransform` calls this when augmentation is on, so
    the compile happens once in the main process, before DataLoader workers fork (they inherit
    the compiled code instead of compiling it each). First compile on a machine: ~8-15 s on 2
    cores; later processes load it from the cache in ~0.3 s. If compiling fails (an
    unsupported platform), this warns once and the torch path is used from then on.
    """
    global AVAILABLE, _warmed
    if not AVAILABLE or _warmed:
        return AVAILABLE
    try:  # one frame through every branch: clamp, contrast after a clamp, gray, blur
        plan = {"flip": False, "jitter": [("brightness", 1.2), ("contrast", 0.9)], "gray": True, "blur": (3, 1.0)}
        apply(np.zeros((8, 8, 3), dtype=np.uint8), *encode(plan))
        _warmed = True
    except Exception as exn:  # noqa: BLE001 - any compile failure means: use the torch path
        warnings.warn(f"ssltk: the compiled photometric kernel is unavailable ({type(exn).__name__}: {exn}); "
                      "augmenting with the torch path", RuntimeWarning, stacklevel=2)  # fmt: skip
        AVAILABLE = False
    return AVAILABLE


def apply(src: np.ndarray, ops: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Run encoded ``ops`` on a C-contiguous uint8 ``[H, W, 3]`` frame; a new C-contiguous uint8 ``[3, H, W]`` array."""
    out = np.empty((3, src.shape[0], src.shape[1]), dtype=np.uint8)
    _photometric(src, ops, weights, out)
    return out


def _njit(fn=None, **kw):
    if fn is None:
        return lambda f: _njit(f, **kw)
    if numba is None:  # pragma: no cover
        return fn
    # fastmath: lets LLVM vectorise the min/max clamps and the sums (inputs are finite; the sums'
    # reassociation changes them by float rounding only). cache: compiled once per machine.
    return numba.njit(cache=True, nogil=True, fastmath=True, **kw)(fn)


@_njit(inline="always")
def _coefs(mats, s):
    """Stage ``s`` of ``mats [4, 12]`` (row-major ``M | c``) as a tuple of scalars (registers in the loops)."""
    m = mats[s]
    return (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11])


@_njit(inline="always")
def _stage(k, r, g, b):
    """``clamp(M @ (r, g, b) + c)`` for one stage's coefficients ``k``."""
    lo, hi = np.float32(0.0), np.float32(255.0)
    y0 = min(max(k[0] * r + k[1] * g + k[2] * b + k[3], lo), hi)
    y1 = min(max(k[4] * r + k[5] * g + k[6] * b + k[7], lo), hi)
    y2 = min(max(k[8] * r + k[9] * g + k[10] * b + k[11], lo), hi)
    return y0, y1, y2


@_njit(inline="always")
def _stages(x, p, n, k0, k1, k2, k3):
    """Pixel ``p`` of the flat HWC buffer ``x`` through the first ``n`` (1 to 4, a literal) clamped stages."""
    r, g, b = np.float32(x[3 * p]), np.float32(x[3 * p + 1]), np.float32(x[3 * p + 2])
    r, g, b = _stage(k0, r, g, b)
    if n >= 2:
        r, g, b = _stage(k1, r, g, b)
    if n >= 3:
        r, g, b = _stage(k2, r, g, b)
    if n >= 4:
        r, g, b = _stage(k3, r, g, b)
    return r, g, b


@_njit(inline="always")
def _u8_loop(x, out, n, k0, k1, k2, k3):
    half = np.float32(0.5)
    npx = x.shape[0] // 3
    r_out, g_out, b_out = out[:npx], out[npx : 2 * npx], out[2 * npx :]  # planar (CHW) output
    for p in range(npx):
        y0, y1, y2 = _stages(x, p, n, k0, k1, k2, k3)
        r_out[p] = np.uint8(y0 + half)
        g_out[p] = np.uint8(y1 + half)
        b_out[p] = np.uint8(y2 + half)


@_njit
def _run_u8(x, mats, n, out):
    """``out = uint8(round(stages(x)))`` (round half up: +0.5, then truncation of a value in [0, 255.5]),
    interleaved HWC in, planar CHW out (the batch layout: the collate copy is then a plain memcpy,
    ~2 us per 128-px frame instead of ~16 us for a transposing copy).

    One loop per stage count (1 to 4), each with the count known inside, so a frame pays for
    its own stages only (each stage costs ~6-8 us per 128-px frame, measured)."""
    k0, k1, k2, k3 = _coefs(mats, 0), _coefs(mats, 1), _coefs(mats, 2), _coefs(mats, 3)
    if n == 1:
        _u8_loop(x, out, 1, k0, k1, k2, k3)
    elif n == 2:
        _u8_loop(x, out, 2, k0, k1, k2, k3)
    elif n == 3:
        _u8_loop(x, out, 3, k0, k1, k2, k3)
    else:
        _u8_loop(x, out, 4, k0, k1, k2, k3)


@_njit
def _run_f32(x, mats, out):
    """``out = stages(x)`` in float32, all four stages (the input of the blur; blur frames are rare)."""
    k0, k1, k2, k3 = _coefs(mats, 0), _coefs(mats, 1), _coefs(mats, 2), _coefs(mats, 3)
    for p in range(x.shape[0] // 3):
        y0, y1, y2 = _stages(x, p, 4, k0, k1, k2, k3)
        out[3 * p] = y0
        out[3 * p + 1] = y1
        out[3 * p + 2] = y2


@_njit
def _sums(x):
    """Per-channel sums of a flat HWC buffer."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    for p in range(x.shape[0] // 3):
        s0 += x[3 * p]
        s1 += x[3 * p + 1]
        s2 += x[3 * p + 2]
    return s0, s1, s2


@_njit
def _run_means(x, mats, n):
    """Per-channel means of the first ``n`` stages of ``x`` (contrast's pivot); ``n = 0``: of ``x``."""
    npx = x.shape[0] // 3
    if n == 0:
        s0, s1, s2 = _sums(x)
        return s0 / npx, s1 / npx, s2 / npx
    k0, k1, k2, k3 = _coefs(mats, 0), _coefs(mats, 1), _coefs(mats, 2), _coefs(mats, 3)
    if n == 1:  # the count as a literal in each loop: only the stages so far (not all four) per pixel
        s0, s1, s2 = _stage_sums(x, 1, k0, k1, k2, k3)
    elif n == 2:
        s0, s1, s2 = _stage_sums(x, 2, k0, k1, k2, k3)
    else:  # three stages before a contrast: not reachable with three jitter ops, kept for safety
        s0, s1, s2 = _stage_sums(x, 3, k0, k1, k2, k3)
    return s0 / npx, s1 / npx, s2 / npx


@_njit(inline="always")
def _stage_sums(x, n, k0, k1, k2, k3):
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    for p in range(x.shape[0] // 3):
        y0, y1, y2 = _stages(x, p, n, k0, k1, k2, k3)
        s0 += y0
        s1 += y1
        s2 += y2
    return s0, s1, s2


@_njit
def _reflect(i, n):
    """torch's ``reflect`` padding index (the edge pixel is not repeated)."""
    if i < 0:
        i = -i
    if i > n - 1:
        i = 2 * (n - 1) - i
    return i


@_njit
def _axpy_taps(out, src, weights, stride):
    """``out[q] = sum_t weights[t] * src[q + stride * t]`` (contiguous 1-D views; vectorises over q)."""
    n = out.shape[0]
    for q in range(n):
        out[q] = 0.0
    for t in range(weights.shape[0]):
        wt = weights[t]
        s = src[stride * t : stride * t + n]
        for q in range(n):
            out[q] += wt * s[q]


@_njit
def _blur(buf, h, w, weights):
    """Separable Gaussian blur of a float32 HWC buffer in place (reflect padding, as torchvision).

    Loops run over whole row views (index >= 0 is then known, so LLVM vectorises them:
    ~10x the speed of flat ``base + q`` indexing, measured).
    """
    k = weights.shape[0]
    r = k // 2
    row = w * 3
    pad = np.empty((w + 2 * r) * 3, dtype=np.float32)
    tmp = np.empty((h + 2 * r) * row, dtype=np.float32)  # row-blurred frame, reflect-padded by r rows
    for i in range(h):  # along each row, through a reflect-padded copy of it
        src = buf[i * row : (i + 1) * row]
        pad[3 * r : 3 * r + row] = src
        for j in range(r):  # the reflected edges: pad[r - 1 - j] = src[j + 1], pad[r + w + j] = src[w - 2 - j]
            for ch in range(3):
                pad[3 * (r - 1 - j) + ch] = src[3 * (j + 1) + ch]
                pad[3 * (r + w + j) + ch] = src[3 * (w - 2 - j) + ch]
        _axpy_taps(tmp[(i + r) * row : (i + r + 1) * row], pad, weights, 3)
    for i in range(r):  # the padding rows, copied from the reflected rows
        tmp[(r - 1 - i) * row : (r - i) * row] = tmp[(r + i + 1) * row : (r + i + 2) * row]
        tmp[(h + r + i) * row : (h + r + i + 1) * row] = tmp[(h + r - 2 - i) * row : (h + r - 1 - i) * row]
    for i in range(h):  # along each column: whole rows at a time
        _axpy_taps(buf[i * row : (i + 1) * row], tmp[i * row :], weights, row)


@_njit
def _identity_stages():
    mats = np.zeros((4, 12), dtype=np.float32)
    for s in range(4):
        mats[s, 0] = mats[s, 5] = mats[s, 10] = 1.0
    return mats


@_njit
def _photometric(src, ops, weights, out):
    """The ops as up to four affine stages, each clamped (a clamp op starts a new stage), then
    one pass over the pixels that runs all stages in registers; blur (always last) between the
    stages and the final rounding."""
    x = src.reshape(-1)
    luma = np.array([0.2989, 0.587, 0.114])
    mats = _identity_stages()  # identity stages: exact no-ops on clamped values
    m = np.eye(3)
    c = np.zeros(3)
    stage = 0
    have_mean = False
    mean = np.zeros(3)
    blur = False
    for n in range(ops.shape[0]):
        code = int(ops[n, 0])
        f = ops[n, 1]
        if code == 0:  # brightness: blend with black
            m *= f
            c *= f
        elif code == 1:  # contrast: blend with the mean grey level of the current image
            if not have_mean:
                mean[0], mean[1], mean[2] = _run_means(x, mats, stage)  # the stages so far
                have_mean = True
            grey = 0.0
            for i in range(3):
                yi = c[i]
                for j in range(3):
                    yi += m[i, j] * mean[j]
                grey += luma[i] * yi
            m *= f
            c = f * c + (1.0 - f) * grey
        elif code == 2 or code == 3:  # saturation (blend with grey) / grayscale: a = f I + (1 - f) 1 luma^T
            keep = f if code == 2 else 0.0
            m2 = np.zeros((3, 3))
            c2 = np.zeros(3)
            for i in range(3):
                for j in range(3):
                    a = (keep if i == j else 0.0) + (1.0 - keep) * luma[j]
                    c2[i] += a * c[j]
                    for q in range(3):
                        m2[i, q] += a * m[j, q]
            m = m2
            c = c2
        elif code == 4:  # clamp: close this stage
            for i in range(3):
                for j in range(3):
                    mats[stage, 4 * i + j] = m[i, j]
                mats[stage, 4 * i + 3] = c[i]
            stage += 1
            m = np.eye(3)
            c = np.zeros(3)
            have_mean = False
        else:
            blur = True
    for i in range(3):  # the last stage
        for j in range(3):
            mats[stage, 4 * i + j] = m[i, j]
        mats[stage, 4 * i + 3] = c[i]
    dst = out.reshape(-1)
    if not blur:
        _run_u8(x, mats, stage + 1, dst)
        return
    h, w = src.shape[0], src.shape[1]
    buf = np.empty(h * w * 3, dtype=np.float32)
    _run_f32(x, mats, buf)
    _blur(buf, h, w, weights)
    _run_u8(buf, _identity_stages(), 1, dst)
