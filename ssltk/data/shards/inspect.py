"""What is in a shard set (``ssltk data inspect``): counts, cameras, missing frames, sizes, ego fields.

:func:`inspect_shards` reads only the segment JSON of each sample (image
members are skipped without decoding), so it is quick even on large sets.
It reads every shard to its end: each damaged shard and sample is listed
under ``damaged`` with its kind (:data:`DAMAGE`, the training loader's skip
kinds), and the summary counts what is readable.
Overlapping segments store some timesteps twice; counts of ``timesteps`` and
``missing`` and ``frames`` are of distinct ``(episode, timestep)`` pairs and
camera frames, while ``images`` counts stored image members.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Iterator

from ssltk.data.shards.format import SegmentMeta, read_manifest, resolve_shards
from ssltk.data.shards.reader import TarFormatError, group_samples, read_shard
from ssltk.errors import UsageError, one_line

__all__ = ["DAMAGE", "inspect_shards", "iter_metas"]

# Kind of damage -> how `data inspect` says it (the kinds are the training loader's skip kinds).
DAMAGE = {
    "missing_shard": "cannot be opened",
    "not_a_tar": "not a tar file",
    "empty_shard": "empty shard (no samples)",
    "truncated_tar": "truncated (samples before the cut are readable)",
    "bad_member": "damaged tar member (the rest of the shard is unreadable)",
    "no_json": "sample without json metadata",
    "bad_json": "json metadata that is not a valid ssltk segment",
}


def _damage(damage: list[dict[str, Any]], url: str, kind: str, key: str | None, detail: str, after: str | None = None) -> None:
    """Record one damaged shard (``key`` None; ``after``: the last good member) or sample."""
    damage.append({"shard": url, "kind": kind, "key": key, "after": after, "detail": detail})


def iter_metas(paths: Iterable[str], damage: list[dict[str, Any]]) -> Iterator[tuple[str, SegmentMeta, dict[str, int]]]:
    """``(url, SegmentMeta, {camera: image bytes})`` per readable segment (images are not decoded).

    Every shard is read to its end; each damaged shard and sample is appended
    to ``damage`` (``{"shard", "kind", "key", "after", "detail"}``).
    """
    for url in paths:
        problems: list[TarFormatError] = []
        samples = 0
        for sample in group_samples(read_shard(url, problems), url, problems):
            samples += 1
            key = sample["__key__"]
            if "json" not in sample:
                _damage(damage, url, "no_json", key, f"{len(sample) - 2} member(s), none of them .json")
                continue
            try:
                meta = SegmentMeta.from_json(sample["json"])
            except (ValueError, TypeError, KeyError) as exc:
                _damage(damage, url, "bad_json", key, one_line(exc)[:200])
                continue
            sizes: Counter = Counter()
            for field, data in sample.items():
                if field.count(".") == 2 and not field.startswith("__"):
                    sizes[field.split(".")[1]] += len(data)
            yield url, meta, dict(sizes)
        for exc in problems:
            _damage(damage, url, exc.kind, exc.key, str(exc), after=exc.after)
        if samples == 0 and not problems:
            _damage(damage, url, "empty_shard", None, "no samples")


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
    damage: list[dict[str, Any]] = []
    for _, meta, sizes_by_cam in iter_metas(paths, damage):
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
    if not segments and not damage:
        raise UsageError(f"no segments in {spec}")
    if not segments:  # everything is damaged: say so, shard by shard
        return {"shards": len(paths), "segments": 0, **_damage_summary(damage)}
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
        **_damage_summary(damage),
    }


def _damage_summary(damage: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "damaged_shards": len({d["shard"] for d in damage}),
        "damage_kinds": dict(Counter(d["kind"] for d in damage)),
        "damaged": damage,
    }


def damage_lines(info: dict[str, Any]) -> list[str]:
    """One line per damaged shard or sample of :func:`inspect_shards` output."""
    lines = []
    for d in info.get("damaged", []):
        where = Path(d["shard"]).name if "://" not in d["shard"] else d["shard"]
        key = f", sample {d['key']}" if d.get("key") else f" after member {d['after']}" if d.get("after") else ""
        lines.append(f"{where}{key}: {DAMAGE.get(d['kind'], d['kind'])} [{d['kind']}] ({d['detail']})")
    return lines


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
