"""Tiny episode shards for tests, with images that say which frame they are.

:func:`write_tiny_shards` writes a valid shard set (``docs/episode_shards.md``)
through :class:`ssltk.data.shards.format.ShardSetWriter`. Every image is two flat
colours: the top half encodes the episode's frame number, the bottom half the
episode index and the camera index, each as base-16 digits on a coarse colour
scale that survives JPEG and resizing. :func:`identify` reads them back, so a
test can check exactly which ``(episode, frame, camera)`` a pipeline delivered.

Episodes are named ``ep{i:04d}``; frame numbers are the timestep indices
``0 .. length-1``; timestamps are ``t / fps``; ego fields are closed-form:
``speed = 100 * episode + t`` and ``steering`` is unknown (``None``) everywhere.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ssltk.data.shards.format import SegmentMeta, ShardSetWriter

__all__ = ["write_tiny_shards", "identify", "identity_colours", "episode_name", "write_raw_tar", "encode_jpeg"]

LEVELS = 16  # colour levels per channel
_STEP = 256 // LEVELS  # 16 units between levels: JPEG error on flat colour is a few units


def episode_name(i: int) -> str:
    return f"ep{i:04d}"


def _level_colour(levels: Sequence[int]) -> tuple[int, int, int]:
    return tuple(_STEP // 2 + _STEP * int(v) for v in levels)  # type: ignore[return-value]


def identity_colours(episode: int, frame: int, camera: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(top RGB, bottom RGB) for a frame: top = frame in base 16, bottom = (episode // 16, episode % 16, camera)."""
    if not (0 <= frame < LEVELS**3 and 0 <= episode < LEVELS**2 and 0 <= camera < LEVELS):
        raise ValueError("identity colours support frame < 4096, episode < 256, camera < 16")
    top = _level_colour((frame // LEVELS**2, (frame // LEVELS) % LEVELS, frame % LEVELS))
    bottom = _level_colour((episode // LEVELS, episode % LEVELS, camera))
    return top, bottom


def _render(episode: int, frame: int, camera: int, height: int, width: int) -> np.ndarray:
    top, bottom = identity_colours(episode, frame, camera)
    img = np.empty((height, width, 3), np.uint8)
    img[: height // 2] = top
    img[height // 2 :] = bottom
    return img


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an ``HxWx3`` uint8 array (PIL, 4:4:4 so flat colours stay exact)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _levels(rgb: np.ndarray) -> list[int]:
    return [int(np.clip(round((float(v) - _STEP // 2) / _STEP), 0, LEVELS - 1)) for v in rgb]


def identify(image: Any) -> tuple[int, int, int]:
    """``(episode, frame, camera)`` of an image written by :func:`write_tiny_shards`.

    Accepts a ``CxHxW`` tensor/array (as in ``batch["frames"][b, t, v]``) or an
    ``HxWx3`` array. Reads the median colour of a band in each half.
    """
    arr = np.asarray(image.cpu() if hasattr(image, "cpu") else image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = arr.transpose(1, 2, 0)
    h = arr.shape[0]
    band = max(1, h // 8)
    top = np.median(arr[h // 4 - band // 2 : h // 4 + band // 2 + 1].reshape(-1, 3), axis=0)
    bottom = np.median(arr[3 * h // 4 - band // 2 : 3 * h // 4 + band // 2 + 1].reshape(-1, 3), axis=0)
    f = _levels(top)
    e = _levels(bottom)
    return e[0] * LEVELS + e[1], f[0] * LEVELS**2 + f[1] * LEVELS + f[2], e[2]


def _per_episode(value: Any, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what}: {len(value)} values for {n} episodes")
        return list(value)
    return [value] * n


def _segments(length: int, segment_length: int, overlap: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each segment: stride ``segment_length - overlap``, last one may be shorter."""
    stride = segment_length - overlap
    if stride <= 0:
        raise ValueError("overlap must be smaller than segment_length")
    out, start = [], 0
    while True:
        end = min(start + segment_length, length)
        out.append((start, end))
        if end >= length:
            return out
        start += stride


def _is_dropped(drop: Any, rng: np.random.Generator, ep: int, t: int, cam: str) -> bool:
    if callable(drop):
        return bool(drop(ep, t, cam))
    if isinstance(drop, Mapping):
        return t in drop.get(cam, ())
    return bool(drop) and rng.random() < float(drop)


def write_tiny_shards(
    directory: str | Path,
    *,
    episodes: int = 3,
    length: int | Sequence[int] = 12,
    cameras: Sequence[str] = ("front",),
    image_size: int | tuple[int, int] = 16,
    segment_length: int = 8,
    overlap: int = 0,
    drop: float | Mapping[str, Sequence[int]] | Callable[[int, int, str], bool] = 0.0,
    fps: float | Sequence[float] = 10.0,
    seed: int = 0,
    segments_per_shard: int = 4,
    quality: int = 95,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``episodes`` synthetic episodes as segment shards; return the manifest.

    ``length`` and ``fps`` may be per-episode lists. ``image_size`` is an int
    (square) or ``(H, W)``. ``drop`` makes images missing (listed in the
    segment's ``missing``): a probability per (timestep, camera), a mapping
    ``camera -> timesteps`` applied to every episode, or a predicate
    ``(episode_index, t, camera) -> bool``. Segments start every
    ``segment_length - overlap`` timesteps; an episode's last segment may be
    shorter. Shards hold ``segments_per_shard`` segments each.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    lengths = _per_episode(length, episodes, "length")
    rates = _per_episode(fps, episodes, "fps")
    rng = np.random.default_rng(seed)
    info = {"segment_length": segment_length, "overlap": overlap, "generator": "ssltk.testing.shards"}
    writer = ShardSetWriter(directory, max_segments=segments_per_shard, overwrite=overwrite, info=info)
    try:
        for ep in range(episodes):
            n, rate = int(lengths[ep]), float(rates[ep])
            dropped = {(t, c) for t in range(n) for c in cameras if _is_dropped(drop, rng, ep, t, c)}
            for start, end in _segments(n, segment_length, overlap):
                images, missing = {}, {}
                for i, t in enumerate(range(start, end)):
                    for ci, cam in enumerate(cameras):
                        if (t, cam) in dropped:
                            missing.setdefault(cam, []).append(i)
                        else:
                            images[(i, cam)] = encode_jpeg(_render(ep, t, ci, h, w), quality)
                meta = SegmentMeta(
                    episode=episode_name(ep),
                    start=start,
                    frames=list(range(start, end)),
                    timestamps=[t / rate for t in range(start, end)],
                    cameras=list(cameras),
                    image_size=[h, w],
                    missing=missing,
                    ego={"speed": [100.0 * ep + t for t in range(start, end)], "steering": [None] * (end - start)},
                    fps=rate,
                    episode_length=n,
                )
                writer.write(meta, images)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


def write_raw_tar(path: str | Path, members: Sequence[tuple[str, bytes]]) -> Path:
    """Write a tar with exactly ``members`` (name, bytes), in order — for hand-made bad shards."""
    path = Path(path)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 0
            tar.addfile(ti, io.BytesIO(data))
    return path
