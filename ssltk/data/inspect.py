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
from typing import Any, Callable, Iterable, Iterator

from ssltk.data.format import SegmentMeta, read_manifest, resolve_shards
from ssltk.data.tario import TarFormatError, split_key
from ssltk.data.tario import iter_members as _tar_members
from ssltk.errors import UsageError

__all__ = ["DAMAGE", "inspect_shards", "iter_members", "iter_metas"]

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


_CUT = ("truncated_tar", "bad_member", "not_a_tar")  # the sample being read when these hit is part of them


def _open(url: str):
    if "://" in url or url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    return open(url, "rb", buffering=1 << 20)


def _damage(damage: list[dict[str, Any]] | None, url: str, kind: str, key: str | None, detail: str,
            after: str | None = None) -> None:
    """Record one damaged shard (``key`` None; ``after``: the last good member) or sample, or raise (``damage is None``)."""
    if damage is None:
        raise UsageError(f"{url}{': ' + key if key else ''}: {DAMAGE[kind]} ({detail})")
    damage.append({"shard": url, "kind": kind, "key": key, "after": after, "detail": detail})


def iter_members(
    url: str, want: Callable[[str], bool], damage: list[dict[str, Any]] | None = None
) -> Iterator[tuple[str, int, bytes | None]]:
    """``(member name, size, bytes or None)`` for every file in a shard, the bytes only where ``want(name)``.

    A damaged shard raises UsageError, or with a ``damage`` list is recorded there
    (``{"shard", "kind", "key", "detail"}``) after the members before the damage.
    """
    try:
        stream = _open(url)
    except OSError as exc:
        _damage(damage, url, "missing_shard", None, exc.strerror or str(exc))
        return
    last = None
    try:
        for name, data in _tar_members(stream):
            last = name
            yield name, len(data), data if want(name) else None
    except TarFormatError as exc:
        _damage(damage, url, exc.kind, None, str(exc), after=last)
    except OSError as exc:
        _damage(damage, url, "truncated_tar", None, f"{type(exc).__name__}: {exc}", after=last)
    finally:
        stream.close()


def iter_metas(
    paths: Iterable[str], damage: list[dict[str, Any]] | None = None
) -> Iterator[tuple[str, SegmentMeta, dict[str, int]]]:
    """``(url, SegmentMeta, {camera: image bytes})`` per segment, without reading image data.

    Without ``damage`` the first damaged shard or segment JSON raises UsageError (samples
    without JSON are passed over); with a ``damage`` list every shard is read to its end
    and each damaged shard and sample is recorded there instead.
    """
    for url in paths:
        key, fields, meta, sizes, samples, failed = None, set(), None, Counter(), 0, len(damage or ())

        def finish(last: bool = False):
            cut = last and damage and len(damage) > failed and damage[-1]["kind"] in _CUT
            if key is not None and meta is None and damage is not None and "json" not in fields and not cut:
                _damage(damage, url, "no_json", key, f"{len(fields)} member(s), none of them .json")
            return meta is not None

        for name, size, data in iter_members(url, lambda n: n.endswith(".json"), damage):
            parts = split_key(name)
            if parts is None or name.rsplit("/", 1)[-1].startswith("__"):
                continue
            sample, field = parts
            if sample != key:
                if finish():
                    yield url, meta, dict(sizes)
                key, fields, meta, sizes, samples = sample, set(), None, Counter(), samples + 1
            if field in fields:
                _damage(damage, url, "bad_member", sample, f"duplicate member {name}")
                continue
            fields.add(field)
            if field == "json":
                try:
                    meta = SegmentMeta.from_json(data)
                except (ValueError, TypeError, KeyError) as exc:
                    if damage is None:
                        raise UsageError(f"{url}: {name}: not a valid segment ({exc})") from None
                    _damage(damage, url, "bad_json", sample, str(exc).splitlines()[0][:200])
            elif field.count(".") == 2:
                sizes[field.split(".")[1]] += size
        if finish(last=True):
            yield url, meta, dict(sizes)
        if damage is not None and samples == 0 and len(damage) == failed:
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
