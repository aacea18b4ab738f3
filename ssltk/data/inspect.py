"""What is in a shard set (``ssltk data inspect``): counts, cameras, missing frames, sizes, ego fields.

:func:`inspect_shards` reads only the segment JSON of each sample (image
members are skipped without decoding), so it is quick even on large sets.
Overlapping segments store some timesteps twice; counts of ``timesteps`` and
``missing`` and ``frames`` are of distinct ``(episode, timestep)`` pairs and
camera frames, while ``images`` counts stored image members.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ssltk.data.format import SegmentMeta, read_manifest, resolve_shards
from ssltk.errors import UsageError

__all__ = ["inspect_shards", "iter_members", "iter_metas"]


def _open(url: str):
    if "://" in url or url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    return open(url, "rb")


def iter_members(url: str, want: Callable[[str], bool]) -> Iterator[tuple[str, int, bytes | None]]:
    """``(member name, size, bytes or None)`` for every file in a shard, reading the bytes only where ``want(name)``."""
    try:
        with _open(url) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                data = tar.extractfile(member).read() if want(member.name) else None
                yield member.name, member.size, data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UsageError(f"{url}: not a readable tar shard ({exc})") from None


def iter_metas(paths: Iterable[str]) -> Iterator[tuple[str, SegmentMeta, dict[str, int]]]:
    """``(url, SegmentMeta, {camera: image bytes})`` per segment, without reading image data."""
    for url in paths:
        key, meta, sizes = None, None, Counter()
        for name, size, data in iter_members(url, lambda n: n.endswith(".json")):
            sample, _, field = name.partition(".")
            if sample != key:
                if meta is not None:
                    yield url, meta, dict(sizes)
                key, meta, sizes = sample, None, Counter()
            if field == "json":
                try:
                    meta = SegmentMeta.from_json(data)
                except (ValueError, TypeError, KeyError) as exc:
                    raise UsageError(f"{url}: {name}: not a valid segment ({exc})") from None
            elif field.count(".") == 2:
                sizes[field.split(".")[1]] += size
        if meta is not None:
            yield url, meta, dict(sizes)


def inspect_shards(spec: str | Path | Iterable[str]) -> dict[str, Any]:
    """Summary of a shard set as plain data (what ``ssltk data inspect --json`` prints)."""
    paths = resolve_shards(spec)
    episodes: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, int]] = set()
    cameras: list[str] = []
    missing: Counter = Counter()
    image_bytes: Counter = Counter()
    fps, sizes, versions, lengths = set(), set(), set(), Counter()
    ego: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # field -> [known, total] over distinct timesteps
    segments = images = frames = 0
    for _, meta, sizes_by_cam in iter_metas(paths):
        segments += 1
        lengths[meta.length] += 1
        versions.add(meta.version)
        for cam in meta.cameras:
            if cam not in cameras:
                cameras.append(cam)
        if meta.fps:
            fps.add(meta.fps)
        sizes.add(tuple(meta.image_size))
        image_bytes.update(sizes_by_cam)
        ep = episodes.setdefault(meta.episode, {"timesteps": 0, "t0": None, "t1": None})
        for i, (frame, ts) in enumerate(zip(meta.frames, meta.timestamps)):
            images += sum(1 for cam in meta.cameras if meta.has_frame(i, cam))
            if (meta.episode, meta.start + i) in seen:
                continue
            seen.add((meta.episode, meta.start + i))
            frames += len(meta.cameras)
            ep["timesteps"] += 1
            ep["t0"] = ts if ep["t0"] is None else min(ep["t0"], ts)
            ep["t1"] = ts if ep["t1"] is None else max(ep["t1"], ts)
            missing.update(cam for cam in meta.cameras if not meta.has_frame(i, cam))
            for name, values in meta.ego.items():
                ego[name][0] += values[i] is not None
                ego[name][1] += 1
    if not segments:
        raise UsageError(f"no segments in {spec}")
    timesteps = len(seen)
    shard_bytes = [Path(p).stat().st_size if Path(p).exists() else None for p in paths]
    manifest = read_manifest(Path(paths[0]).parent) if Path(paths[0]).exists() else None
    return {
        "shards": len(paths),
        "episodes": len(episodes),
        "segments": segments,
        "timesteps": timesteps,
        "frames": frames - sum(missing.values()),  # distinct camera frames with an image
        "images": images,
        "cameras": cameras,
        "missing": {cam: missing.get(cam, 0) for cam in cameras},
        "missing_rate": {cam: round(missing.get(cam, 0) / timesteps, 6) for cam in cameras},
        "fps": sorted(fps),
        "image_size": [list(s) for s in sorted(sizes)],
        "segment_length": sorted(lengths.elements())[0] if len(lengths) == 1 else {str(k): v for k, v in sorted(lengths.items())},
        "episode_timesteps": _spread([e["timesteps"] for e in episodes.values()]),
        "duration_s": round(sum((e["t1"] or 0) - (e["t0"] or 0) for e in episodes.values()), 6),
        "ego_fields": {name: round(k / n, 6) for name, (k, n) in sorted(ego.items())},
        "bytes": sum(b for b in shard_bytes if b is not None),
        "image_bytes": dict(image_bytes),
        "format_version": sorted(versions),
        "generator": (manifest or {}).get("generator"),
        "manifest": manifest is not None,
    }


def _spread(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": round(sum(values) / len(values), 3), "max": max(values)}


def summary_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """Human-readable (label, value) rows of :func:`inspect_shards` output."""
    mb = info["bytes"] / 1e6
    missing = ", ".join(f"{c} {n} ({100 * info['missing_rate'][c]:.1f}%)" for c, n in info["missing"].items())
    spread = info["episode_timesteps"]
    return [
        ("shards", f"{info['shards']}  ({mb:.1f} MB)"),
        ("episodes", f"{info['episodes']}  ({spread['min']}-{spread['max']} timesteps, {info['duration_s']:.1f} s in all)"),
        ("segments", f"{info['segments']}  (length {json.dumps(info['segment_length'])})"),
        ("timesteps", str(info["timesteps"])),
        ("frames", f"{info['frames']} camera frames, {info['images']} images stored (overlapping segments store some twice)"),
        ("cameras", ", ".join(info["cameras"])),
        ("missing frames", missing),
        ("fps", ", ".join(f"{v:g}" for v in info["fps"]) or "unknown"),
        ("image size (HxW)", ", ".join(f"{h}x{w}" for h, w in info["image_size"])),
        ("ego fields", ", ".join(f"{k} ({100 * v:.0f}%)" if v < 1 else k for k, v in info["ego_fields"].items()) or "none"),
        ("format version", ", ".join(map(str, info["format_version"]))),
        ("generator", str(info["generator"] or "unknown")),
    ]
