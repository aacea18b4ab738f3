"""decode_jpeg: backends agree, DCT-domain downscale keeps the minimum size, PNG and errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ssltk.data.stream.decode import DECODERS, DecodeError, decode_jpeg, image_size_of
from ssltk.testing.shards import encode_jpeg


def smooth_image(h=48, w=80, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w)], axis=-1)
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def test_decode_returns_uint8_chw_close_to_source():
    img = smooth_image()
    out = decode_jpeg(encode_jpeg(img, quality=95))
    assert out.dtype == torch.uint8 and tuple(out.shape) == (3, 48, 80)
    err = (out.permute(1, 2, 0).numpy().astype(int) - img.astype(int)).__abs__().mean()
    assert err < 3


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_backends_agree_at_full_size(name):
    data = encode_jpeg(smooth_image(), quality=90)
    ref = DECODERS["pil"](data, None).numpy().astype(int)
    got = DECODERS[name](data, None)
    assert tuple(got.shape) == (3, 48, 80)
    assert np.abs(got.numpy().astype(int) - ref).mean() < 2


@pytest.mark.parametrize("size", [None, 48, 40, 30, 24, 12, 6, 2])
def test_dct_downscale_never_below_size(size):
    out = decode_jpeg(encode_jpeg(smooth_image(48, 80)), size)
    # libjpeg-turbo scales by M/8: the smallest M whose shorter side still reaches ``size``
    m = next(m for m in range(1, 9) if math.ceil(48 * m / 8) >= (size or 48))
    assert tuple(out.shape[1:]) == (math.ceil(48 * m / 8), math.ceil(80 * m / 8))
    assert min(out.shape[1:]) >= min(size or 0, 48)


def test_pil_draft_also_respects_size():
    out = DECODERS["pil"](encode_jpeg(smooth_image()), 24)
    assert min(out.shape[1:]) >= 24 and out.shape[1] < 48


def test_grayscale_jpeg_becomes_three_channels():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(buf, "JPEG")
    out = decode_jpeg(buf.getvalue())
    assert tuple(out.shape) == (3, 8, 8) and int(out.float().mean().round()) == 200


def test_png_falls_back_to_pil():
    img = smooth_image(10, 12)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    out = decode_jpeg(buf.getvalue(), 4)
    assert torch.equal(out.permute(1, 2, 0), torch.from_numpy(img))  # lossless, full size
    assert image_size_of(buf.getvalue()) == (10, 12)


@pytest.mark.parametrize("bad", [b"", b"garbage", b"\xff\xd8\xff\xe0garbage"])
def test_corrupt_bytes_raise_decode_error(bad):
    with pytest.raises(DecodeError):
        decode_jpeg(bad)


def test_truncated_jpeg_raises_decode_error():
    data = encode_jpeg(smooth_image())
    with pytest.raises(DecodeError, match="corrupt JPEG"):
        decode_jpeg(data[: len(data) // 2])


def test_image_size_of_jpeg_header():
    assert image_size_of(encode_jpeg(smooth_image(30, 50))) == (30, 50)
    with pytest.raises(DecodeError):
        image_size_of(b"\xff\xd8nope")
