"""Synthetic multi-camera driving episodes, written as episode shards (``ssltk data synth``).

Each episode is a procedural world (:mod:`ssltk.data.synth.world`) rendered in
perspective from a fixed camera rig (:mod:`ssltk.data.synth.render`), JPEG-encoded
with simplejpeg and cut into overlapping segments (``docs/episode_shards.md``).
The output is a pure function of the options: the same options give
byte-identical shards, whatever the number of worker processes.

>>> manifest = synth_episodes("shards/synth", episodes=4, length=32, image_size=64)
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ssltk.data.shards.format import SegmentMeta, ShardSetWriter, segment_starts
from ssltk.data.synth.params import SynthParams, synth_params
from ssltk.data.synth.render import Renderer
from ssltk.data.synth.world import World
from ssltk.errors import UsageError

GENERATOR = "ssltk.data.synth"
# Bump whenever the same options would produce different images or metadata:
# cached default shard sets (ssltk.data.synth.cache) are keyed by it.
GENERATOR_VERSION = 1
EGO_DECIMALS = 6  # ego values are rounded to micro-units in the metadata

__all__ = ["synth_episodes", "synth_params", "SynthParams", "episode_name", "render_episode", "GENERATOR_VERSION"]


def episode_name(seed: int, index: int) -> str:
    return f"synth-s{seed}-e{index:05d}"


@dataclass
class RenderedEpisode:
    """One episode: encoded images by (timestep, camera), dropped frames and per-timestep ground truth."""

    name: str
    images: dict[tuple[int, str], bytes]
    dropped: np.ndarray  # (T, cameras) bool
    ego: dict[str, list[float]]


_RENDERERS: dict[tuple, Renderer] = {}


def _renderer(cameras: Sequence[str], h: int, w: int) -> Renderer:
    key = (tuple(cameras), h, w)
    if key not in _RENDERERS:
        _RENDERERS.clear()
        _RENDERERS[key] = Renderer(cameras, h, w)
    return _RENDERERS[key]


def build_world(params: dict[str, Any], index: int) -> tuple[World, np.ndarray]:
    """The world of episode ``index`` and its dropped-frame mask (T, cameras), from independent seed streams."""
    world_seed, drop_seed = np.random.SeedSequence([params["seed"], index]).spawn(2)
    world = World(world_seed, params["length"], params["fps"], tuple(params["speed_range"]))
    shape = (params["length"], len(params["cameras"]))
    dropped = np.random.default_rng(drop_seed).random(shape) < params["drop_rate"]
    return world, dropped


def render_episode(params: dict[str, Any], index: int) -> RenderedEpisode:
    """Render and encode episode ``index`` (a module-level function, so worker processes can run it)."""
    import simplejpeg

    world, dropped = build_world(params, index)
    h, w = params["image_size"]
    renderer = _renderer(params["cameras"], h, w)
    images: dict[tuple[int, str], bytes] = {}
    for t in range(params["length"]):
        frames = renderer.render(world, t, which=~dropped[t])
        for cam, img in zip(params["cameras"], frames):
            if img is not None:
                images[(t, cam)] = simplejpeg.encode_jpeg(img, quality=params["quality"], colorspace="RGB", colorsubsampling="420")
    fields = [k for k in world.ego if k not in ("s", "d")]
    ego = {k: [round(float(v), EGO_DECIMALS) + 0.0 for v in world.ego[k]] for k in fields}
    return RenderedEpisode(episode_name(params["seed"], index), images, dropped, ego)


def episode_segments(ep: RenderedEpisode, params: dict[str, Any]):
    """Yield ``(SegmentMeta, images)`` for each segment of a rendered episode."""
    n, fps, cams = params["length"], params["fps"], params["cameras"]
    for start in segment_starts(n, params["segment_length"], params["overlap"]):
        steps = range(start, min(start + params["segment_length"], n))
        images = {(i, cam): ep.images[(t, cam)] for i, t in enumerate(steps) for cam in cams if (t, cam) in ep.images}
        missing = {cam: [i for i, t in enumerate(steps) if ep.dropped[t, c]] for c, cam in enumerate(cams)}
        meta = SegmentMeta(
            episode=ep.name, start=start, frames=list(steps), timestamps=[round(t / fps, 6) for t in steps],
            cameras=list(cams), image_size=list(params["image_size"]), missing={k: v for k, v in missing.items() if v},
            ego={k: v[start : start + len(steps)] for k, v in ep.ego.items()}, fps=fps, episode_length=n,
        )  # fmt: skip
        yield meta, images


def _rendered(params: dict[str, Any], workers: int):
    """Rendered episodes in index order, from this process or a pool of ``workers`` processes."""
    n = params["episodes"]
    if workers <= 1 or n == 1:
        for i in range(n):
            yield render_episode(params, i)
        return
    ctx = multiprocessing.get_context("spawn")  # safe whatever the parent has imported
    with cf.ProcessPoolExecutor(max_workers=min(workers, n), mp_context=ctx) as pool:
        window = 2 * workers  # bound the results held in memory
        pending = [pool.submit(render_episode, params, i) for i in range(min(window, n))]
        for i in range(n):
            yield pending[i].result()
            pending[i] = None  # type: ignore[call-overload]
            if i + window < n:
                pending.append(pool.submit(render_episode, params, i + window))


def synth_episodes(
    out: str | Path,
    params: SynthParams | None = None,
    *,
    shard_size: int = 32,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Generate synthetic episodes into ``out`` as episode shards; return the manifest.

    The episodes are ``params``, or ``SynthParams(**options)`` (``episodes=``,
    ``length=``, ``image_size=``, ... :class:`~ssltk.data.synth.params.SynthParams`);
    ``drop_rate`` is the chance that a camera frame is missing (listed in
    ``SegmentMeta.missing``, no image stored); segments of ``segment_length``
    timesteps overlap by ``overlap``; shards hold ``shard_size`` segments.
    ``progress(n)`` is called with the number of camera frames finished after each episode.
    """
    if params is not None and options:
        raise TypeError(f"synth_episodes: pass params or options ({', '.join(options)}), not both")
    params_dict = (params or SynthParams(**options)).to_dict()
    if shard_size < 1 or workers < 1:
        raise UsageError(f"shard size ({shard_size}) and workers ({workers}) must be >= 1")
    info = {
        "generator": GENERATOR, "generator_version": GENERATOR_VERSION, "synth": params_dict, "fps": params_dict["fps"],
        "image_size": params_dict["image_size"], "segment_length": params_dict["segment_length"],
        "overlap": params_dict["overlap"],
    }  # fmt: skip
    writer = ShardSetWriter(out, max_segments=shard_size, overwrite=overwrite, info=info)
    try:
        for ep in _rendered(params_dict, workers):
            for meta, images in episode_segments(ep, params_dict):
                writer.write(meta, images)
            if progress is not None:
                progress(params_dict["length"] * len(params_dict["cameras"]))
    except BaseException:
        writer.abort()
        raise
    return writer.close()
