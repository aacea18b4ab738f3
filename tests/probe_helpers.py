"""Tiny probe data and bundles for the ``test_probe_*`` tests.

:func:`write_probe_shards` writes episodes whose frames *show* some targets:
the left half's brightness is proportional to the speed, the right half is an
episode-specific stripe pattern that scrolls one column per timestep (so
neighbouring frames look alike and episodes differ), and the second camera sees
the same scene mirrored. ``lane_offset`` is independent noise that no image
shows. Ego motion is a closed-form arc: constant yaw rate per episode, speed
oscillating, ``x, y`` integrated along ``heading``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ssltk.data.shards.format import SegmentMeta, ShardSetWriter
from ssltk.testing.shards import encode_jpeg

ALL_EGO = ("speed", "yaw_rate", "steering", "accel", "x", "y", "heading", "lane_offset")


def ego_tracks(ep: int, length: int, fps: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Closed-form ego motion of episode ``ep`` (metres, radians, seconds)."""
    rng = np.random.default_rng([seed, ep])
    t = np.arange(length) / fps
    phase, yaw = rng.uniform(0, 2 * np.pi), rng.uniform(-0.3, 0.3)
    speed = 8.0 + 4.0 * np.sin(0.8 * t + phase)
    heading = rng.uniform(-np.pi, np.pi) + yaw * t
    dt = 1.0 / fps
    x = np.concatenate([[0.0], np.cumsum(speed[:-1] * np.cos(heading[:-1]) * dt)])
    y = np.concatenate([[0.0], np.cumsum(speed[:-1] * np.sin(heading[:-1]) * dt)])
    return {
        "speed": speed,
        "yaw_rate": np.full(length, yaw),
        "steering": np.arctan(2.8 * yaw / speed),
        "accel": np.gradient(speed, dt),
        "x": x,
        "y": y,
        "heading": heading,
        "lane_offset": rng.normal(0.0, 1.0, length),
    }


def render(ep: int, t: int, cam: int, speed: float, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([seed, 1000 + ep])
    stripes = rng.integers(0, 256, size=(3, 4 * size)).astype(np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:, : size // 2] = np.uint8(min(255, 15 * speed))
    cols = np.roll(stripes, -t, axis=1)[:, : size - size // 2].T  # [w, 3]
    img[:, size // 2 :] = cols[None, :, :]
    return img[:, ::-1].copy() if cam == 1 else img


def write_probe_shards(
    directory: str | Path,
    *,
    episodes: int = 6,
    length: int = 40,
    cameras: Sequence[str] = ("front", "left"),
    size: int = 24,
    fps: float = 10.0,
    segment_length: int = 16,
    overlap: int = 4,
    ego_fields: Sequence[str] = ALL_EGO,
    seed: int = 0,
) -> Path:
    """Write the shard set; segments overlap by ``overlap`` timesteps. Returns ``directory``."""
    with ShardSetWriter(directory, max_segments=4) as writer:
        for ep in range(episodes):
            ego = ego_tracks(ep, length, fps, seed)
            start = 0
            while start < length:
                end = min(start + segment_length, length)
                steps = range(start, end)
                images = {
                    (i, cam): encode_jpeg(render(ep, t, ci, float(ego["speed"][t]), size, seed))
                    for i, t in enumerate(steps)
                    for ci, cam in enumerate(cameras)
                }
                meta = SegmentMeta(
                    episode=f"ep{ep:03d}",
                    start=start,
                    frames=list(steps),
                    timestamps=[t / fps for t in steps],
                    cameras=list(cameras),
                    image_size=[size, size],
                    ego={k: [float(ego[k][t]) for t in steps] for k in ego_fields},
                    fps=fps,
                    episode_length=length,
                )
                writer.write(meta, images)
                if end == length:
                    break
                start = end - overlap
    return Path(directory)


def write_tiny_bundle(directory: str | Path, arch: str = "test_resnet", size: int = 24, seed: int = 0) -> Path:
    """A real ssltk bundle of a small random timm model (input ``size`` px)."""
    import torch

    from ssltk.bundle import write_bundle
    from ssltk_builtins.timm_backbones import TimmFamily

    torch.manual_seed(seed)
    backbone = TimmFamily().create(arch, img_size=size)
    return write_bundle(directory, backbone=backbone, heads={}, manifest={"seed": seed})
