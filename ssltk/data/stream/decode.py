"""One image decoder for the pipeline: :func:`decode_jpeg` (bytes -> uint8 ``[3, H, W]``).

simplejpeg (libjpeg-turbo) is the fastest CPU decoder measured for this
project (``benchmarks/bench_pipeline.py --decoders`` compares it with
torchvision.io and PIL), and it can downscale in the DCT domain: asked for a
shorter side of at least ``size`` pixels it decodes at a reduced M/8 scale (7/8 ... 1/8)
when that is still big enough, which is much cheaper than a full decode
followed by a resize. PNG (and anything that is not a JPEG) goes through PIL.

The other backends stay here so the benchmark and the tests can compare them.
"""

from __future__ import annotations

import io
import warnings
from typing import Callable

import numpy as np
import torch

from ssltk.errors import one_line

__all__ = ["decode_jpeg", "DecodeError", "DECODERS", "image_size_of"]

_JPEG_MAGIC = b"\xff\xd8"


class DecodeError(ValueError):
    """Image bytes that cannot be decoded (truncated, corrupt or not an image)."""


def _to_chw(arr: np.ndarray) -> torch.Tensor:
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    # HWC memory viewed as CHW: channels-last strides, which the resize kernels like.
    return torch.from_numpy(arr).permute(2, 0, 1)


def _decode_simplejpeg(data: bytes, size: int | None) -> torch.Tensor:
    import simplejpeg

    m = int(size or 0)
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=m, min_width=m)
    except ValueError as exn:
        raise DecodeError(f"corrupt JPEG ({exn})") from None
    return _to_chw(arr)


def _decode_torchvision(data: bytes, size: int | None) -> torch.Tensor:
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_jpeg as tv_decode

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to torchcodec
            return tv_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exn:
        raise DecodeError(f"corrupt JPEG ({one_line(exn)})") from None


def _decode_pil(data: bytes, size: int | None) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        if size and img.format == "JPEG":
            img.draft("RGB", (int(size), int(size)))  # DCT-domain downscale, as simplejpeg's min_* does
        arr = np.array(img.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exn:
        raise DecodeError(f"corrupt image ({type(exn).__name__}: {exn})") from None
    return _to_chw(arr)


DECODERS: dict[str, Callable[[bytes, int | None], torch.Tensor]] = {
    "simplejpeg": _decode_simplejpeg,
    "torchvision": _decode_torchvision,
    "pil": _decode_pil,
}


def decode_jpeg(data: bytes, size: int | None = None) -> torch.Tensor:
    """Decode image bytes to a uint8 ``[3, H, W]`` tensor (RGB; grey images are expanded).

    With ``size``, a JPEG may come back downscaled by M/8 (M = 1..7) in the DCT
    domain, but never with a side shorter than ``size`` (unless the stored image
    is already smaller). Non-JPEG data (PNG) is decoded by PIL at full size.
    Raises :class:`DecodeError` for bytes that are not a readable image.
    """
    if data[:2] == _JPEG_MAGIC:
        return _decode_simplejpeg(data, size)
    return _decode_pil(data, None)


def image_size_of(data: bytes) -> tuple[int, int]:
    """``(H, W)`` of JPEG or PNG bytes, from the header only."""
    if data[:2] == _JPEG_MAGIC:
        import simplejpeg

        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exn:
            raise DecodeError(f"corrupt JPEG header ({exn})") from None
        return h, w
    from PIL import Image

    try:
        w, h = Image.open(io.BytesIO(data)).size
    except Exception as exn:  # PIL raises several types for bad headers
        raise DecodeError(f"corrupt image header ({type(exn).__name__})") from None
    return h, w
