"""Pack raw episode folders into episode shards (``ssltk data pack``).

Raw format (``docs/data.md``): one folder per episode holding

* images ``{frame:06d}.{camera}.jpg`` (or ``.jpeg`` / ``.png``), e.g. ``000012.front.jpg``;
* ``meta.jsonl``: one JSON object per frame with ``frame`` (int) and
  ``timestamp`` (seconds), plus any numeric fields (``speed``, ``yaw_rate``,
  ``my_sensor``...), which become ``SegmentMeta.ego``.

Packing runs in two passes. :func:`scan_raw` reads every ``meta.jsonl`` and
checks every image (a full JPEG/PNG decode) before anything is written, so bad
input fails fast with one line naming the file, or, with ``lenient=True``, is
skipped and counted. :func:`pack_episodes` then writes the shards through
:class:`~ssltk.data.shards.format.ShardSetWriter`; JPEG bytes pass through untouched
unless images are resized, PNGs are encoded to JPEG.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ssltk.data.shards.format import MANIFEST, SegmentMeta, ShardSetWriter, segment_starts
from ssltk.errors import UsageError

__all__ = ["pack_episodes", "scan_raw", "RawEpisode", "PackReport", "META_FILE"]

META_FILE = "meta.jsonl"
IMAGE_RE = re.compile(r"^(\d+)\.([A-Za-z0-9][A-Za-z0-9_\-]*)\.(jpg|jpeg|png)$", re.IGNORECASE)
RESERVED = ("frame", "timestamp")
EXPECTED = "one folder per episode with meta.jsonl and images named like 000000.front.jpg"


@dataclass
class RawFrame:
    frame: int
    timestamp: float
    values: dict[str, float | None]
    images: dict[str, Path] = field(default_factory=dict)  # camera -> file


@dataclass
class RawEpisode:
    """One scanned episode folder."""

    name: str
    folder: Path
    frames: list[RawFrame]
    cameras: list[str]
    fields: list[str]  # numeric fields, in first-seen order
    image_size: tuple[int, int] | None  # (H, W) of its images, None if it has none

    @property
    def fps(self) -> float | None:
        if len(self.frames) < 2:
            return None
        dt = float(np.median(np.diff([f.timestamp for f in self.frames])))
        return round(1.0 / dt, 6) if dt > 0 else None


@dataclass
class PackReport:
    """What a scan or a pack did: counts, skipped input (lenient mode) and the first few messages."""

    lenient: bool = False
    skipped: Counter = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    ignored_files: int = 0
    ignored_fields: set[str] = field(default_factory=set)
    renamed: dict[str, str] = field(default_factory=dict)  # folder -> episode name, where they differ
    passed_through: int = 0
    reencoded: int = 0

    def problem(self, kind: str, message: str) -> None:
        """Raise (strict) or count and remember (lenient) one bad input."""
        if not self.lenient:
            raise UsageError(message)
        self.skipped[kind] += 1
        if len(self.messages) < 20:
            self.messages.append(message)


# ---------------------------------------------------------------- scanning


def _episode_folders(src: Path) -> list[Path]:
    if not src.exists():
        raise UsageError(f"{src} does not exist")
    if not src.is_dir():
        raise UsageError(f"{src} is not a folder; expected {EXPECTED}")
    if not any(src.iterdir()):
        raise UsageError(f"{src} is empty; expected {EXPECTED}")
    if (src / META_FILE).is_file():
        return [src]
    folders = sorted({p.parent for p in src.rglob(META_FILE) if p.is_file()})
    if not folders:
        raise UsageError(f"no episode in raw format under {src}: no {META_FILE} found; expected {EXPECTED}")
    return folders


def _episode_name(src: Path, folder: Path) -> str:
    parts = folder.relative_to(src).parts or (folder.resolve().name,)
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", "-".join(parts)).lstrip("_-")
    return name or "episode"


def _number(value: Any) -> float | None | bool:
    """A numeric value as float, None for null/NaN/inf, False if not numeric at all."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return False


def _read_meta(path: Path, report: PackReport) -> dict[int, RawFrame]:
    frames: dict[int, RawFrame] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        report.problem("unreadable meta files", f"{path}: cannot read ({exc})")
        return frames
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            report.problem("bad meta lines", f"{path}:{no}: not valid JSON ({exc.msg}, column {exc.colno})")
            continue
        frame, ts = (obj.get("frame"), obj.get("timestamp")) if isinstance(obj, dict) else (None, None)
        if not isinstance(obj, dict) or isinstance(frame, bool) or not isinstance(frame, (int, float)) or frame != int(frame) or frame < 0:
            report.problem("bad meta lines", f"{path}:{no}: needs a JSON object with a whole, non-negative 'frame' number")
            continue
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            report.problem("bad meta lines", f"{path}:{no}: needs a numeric 'timestamp' (seconds)")
            continue
        if int(frame) in frames:
            report.problem("bad meta lines", f"{path}:{no}: frame {int(frame)} is listed twice")
            continue
        values: dict[str, float | None] = {}
        for key, value in obj.items():
            if key in RESERVED:
                continue
            num = _number(value)
            if num is False:
                report.ignored_fields.add(key)
            else:
                values[key] = num  # type: ignore[assignment]
        frames[int(frame)] = RawFrame(int(frame), float(ts), values)
    return frames


def image_size(path: Path, data: bytes) -> tuple[int, int]:
    """(H, W) of a JPEG or PNG after a full decode (raises ValueError when unreadable)."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        import simplejpeg

        try:
            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            simplejpeg.decode_jpeg(data, min_factor=8, min_height=1, min_width=1)  # full entropy decode, 1/8 scale
        except (ValueError, RuntimeError) as exc:
            raise ValueError(str(exc).strip() or "not a JPEG") from None
        return int(h), int(w)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.height, im.width
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ValueError(str(exc).strip() or "not a PNG") from None


def _attach_images(ep_dir: Path, frames: dict[int, RawFrame], report: PackReport) -> list[str]:
    cameras: set[str] = set()
    for path in sorted(ep_dir.iterdir()):
        m = IMAGE_RE.match(path.name)
        if not m or not path.is_file():
            report.ignored_files += path.name != META_FILE
            continue
        frame, cam = int(m.group(1)), m.group(2).lower()
        if frame not in frames:
            report.ignored_files += 1  # an image without a meta line
            continue
        if cam in frames[frame].images:
            report.problem("duplicate images", f"{path}: frame {frame} camera {cam!r} has two images ({frames[frame].images[cam].name})")
            continue
        frames[frame].images[cam] = path
        cameras.add(cam)
    return sorted(cameras)


def _check_images(ep: RawEpisode, report: PackReport, size_ref: list, resizing: bool) -> None:
    """Decode every image; drop unreadable ones and (unless resizing) ones whose size differs from the first."""
    for fr in ep.frames:
        for cam, path in list(fr.images.items()):
            try:
                hw = image_size(path, path.read_bytes())
            except (OSError, ValueError) as exc:
                report.problem("unreadable images", f"{path}: unreadable image ({exc})")
                del fr.images[cam]
                continue
            if ep.image_size is None:
                ep.image_size = hw
            if not size_ref:
                size_ref.extend([hw, path])
            ref, ref_path = size_ref
            if hw != ref and not resizing:
                report.problem(
                    "images of another size",
                    f"{path}: image is {hw[1]}x{hw[0]} but {ref_path} is {ref[1]}x{ref[0]}; "
                    "all images must have one size (or pass --image-size to resize)",
                )
                del fr.images[cam]


def scan_raw(src: str | Path, *, lenient: bool = False, resizing: bool = False, report: PackReport | None = None) -> list[RawEpisode]:
    """Read and check every episode under ``src`` (see the module docstring); nothing is written."""
    src = Path(src).expanduser()
    report = report if report is not None else PackReport(lenient=lenient)
    episodes: list[RawEpisode] = []
    names: dict[str, Path] = {}
    size_ref: list = []
    for folder in _episode_folders(src):
        name = _episode_name(src, folder)
        if name in names:
            raise UsageError(f"{folder} and {names[name]} would both be episode {name!r}; rename one folder")
        names[name] = folder
        if name != folder.name:
            report.renamed[str(folder)] = name
        frames = _read_meta(folder / META_FILE, report)
        cameras = _attach_images(folder, frames, report)
        ep = RawEpisode(name, folder, [frames[k] for k in sorted(frames)], cameras, [], None)
        _check_images(ep, report, size_ref, resizing)
        _check_frames(ep, report)
        if not ep.frames or not any(fr.images for fr in ep.frames):
            report.problem("episodes without images", f"{folder}: no usable frames with images")
            continue
        ep.cameras = sorted({cam for fr in ep.frames for cam in fr.images})
        ep.fields = list(dict.fromkeys(k for fr in ep.frames for k in fr.values))
        episodes.append(ep)
    return episodes


def _check_frames(ep: RawEpisode, report: PackReport) -> None:
    """Frames without any image, and timestamps that do not increase with the frame number."""
    kept: list[RawFrame] = []
    meta = ep.folder / META_FILE
    for fr in ep.frames:
        if kept and fr.timestamp <= kept[-1].timestamp:
            report.problem("frames with out-of-order timestamps",
                           f"{meta}: frame {fr.frame} has timestamp {fr.timestamp} <= {kept[-1].timestamp} of frame {kept[-1].frame}")  # fmt: skip
            continue
        if not fr.images:
            report.problem("frames without images",
                           f"{meta}: frame {fr.frame} is listed but has no image ({ep.folder}/{fr.frame:06d}.<camera>.jpg)")  # fmt: skip
        kept.append(fr)  # lenient: kept with every camera missing, so the time axis stays intact
    ep.frames = kept


# ---------------------------------------------------------------- writing


class _Encoder:
    """JPEG bytes for a raw image: passed through untouched, or decoded, resized and re-encoded."""

    def __init__(self, size: tuple[int, int] | None, quality: int, report: PackReport) -> None:
        self.size, self.quality, self.report = size, quality, report

    def __call__(self, path: Path) -> bytes:
        data = path.read_bytes()
        is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        if is_jpeg and self.size is None:
            self.report.passed_through += 1
            return data
        import simplejpeg
        from PIL import Image

        if is_jpeg:
            img = Image.fromarray(simplejpeg.decode_jpeg(data, colorspace="RGB"))
        else:
            with Image.open(io.BytesIO(data)) as im:
                img = im.convert("RGB")
        if self.size is not None and (img.height, img.width) != self.size:
            img = img.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR, reducing_gap=3.0)
        self.report.reencoded += 1
        arr = np.ascontiguousarray(np.asarray(img))
        return simplejpeg.encode_jpeg(arr, quality=self.quality, colorspace="RGB", colorsubsampling="420")


def _segments(ep: RawEpisode, length: int, overlap: int, encode: _Encoder, size: tuple[int, int]) -> Iterator:
    """``(SegmentMeta, images, new_frames)`` per segment; encoded images are cached only while segments still need them."""
    n = len(ep.frames)
    cache: dict[tuple[int, str], bytes] = {}
    done = 0
    for start in segment_starts(n, length, overlap):
        stop = min(start + length, n)
        for key in [k for k in cache if k[0] < start]:
            del cache[key]
        frames = ep.frames[start:stop]
        images, missing = {}, {cam: [] for cam in ep.cameras}
        for i, fr in enumerate(frames):
            for cam in ep.cameras:
                if cam not in fr.images:
                    missing[cam].append(i)
                    continue
                key = (start + i, cam)
                if key not in cache:
                    cache[key] = encode(fr.images[cam])
                images[(i, cam)] = cache[key]
        meta = SegmentMeta(
            episode=ep.name, start=start, frames=[f.frame for f in frames], timestamps=[f.timestamp for f in frames],
            cameras=list(ep.cameras), image_size=list(size), missing={c: v for c, v in missing.items() if v},
            ego={k: [f.values.get(k) for f in frames] for k in ep.fields}, fps=ep.fps, episode_length=n,
        )  # fmt: skip
        new = sum(1 for i in range(max(start, done), stop) for cam in ep.cameras if cam in ep.frames[i].images)
        done = max(done, stop)
        yield meta, images, new


def pack_episodes(
    src: str | Path,
    out: str | Path,
    *,
    segment_length: int = 16,
    overlap: int = 8,
    image_size: int | Sequence[int] | None = None,
    quality: int = 90,
    shard_size: int = 64,
    overwrite: bool = False,
    lenient: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Pack raw episode folders under ``src`` into shards in ``out``; return a summary (with the manifest).

    ``image_size``: None keeps the size (JPEGs pass through byte-identical),
    an int or ``(height, width)`` resizes and re-encodes at ``quality``.
    ``progress(done, total)`` is called with image counts while writing.
    """
    started = time.perf_counter()
    segment_starts(2, segment_length, overlap)  # validates the segment options
    if not 1 <= quality <= 100 or shard_size < 1:
        raise UsageError(f"JPEG quality must be 1..100 (got {quality}) and shard size >= 1 (got {shard_size})")
    size = None if image_size is None else _hw(image_size)
    out = Path(out).expanduser()
    if not overwrite and out.is_dir() and (any(out.glob("shard-*.tar")) or (out / MANIFEST).exists()):
        raise UsageError(f"output folder {out} already has shards; pass --overwrite or choose another --out")
    report = PackReport(lenient=lenient)
    episodes = scan_raw(src, lenient=lenient, resizing=size is not None, report=report)
    if not episodes:
        raise UsageError(f"nothing to pack under {src}: every episode was skipped ({dict(report.skipped)})")
    total = sum(len(fr.images) for ep in episodes for fr in ep.frames)
    encode = _Encoder(size, quality, report)
    info = {"generator": "ssltk.data.pack", "source": str(Path(src).expanduser().resolve()),
            "segment_length": segment_length, "overlap": overlap}  # fmt: skip
    writer = ShardSetWriter(out, max_segments=shard_size, overwrite=overwrite, info=info)
    done = 0
    try:
        for ep in episodes:
            for meta, images, new in _segments(ep, segment_length, overlap, encode, size or ep.image_size):
                writer.write(meta, images)
                done += new
                if progress is not None:
                    progress(done, total)
    except BaseException:
        writer.abort()
        raise
    manifest = writer.close()
    missing = {cam: 0 for cam in sorted({c for ep in episodes for c in ep.cameras})}
    for ep in episodes:
        for fr in ep.frames:
            for cam in ep.cameras:
                missing[cam] += cam not in fr.images
    return {
        "out": str(out), "episodes": len(episodes), "timesteps": sum(len(ep.frames) for ep in episodes),
        "images": total, "missing": missing, "segments": manifest["segments"],
        "shards": len(manifest["shards"]), "bytes": sum(s["bytes"] for s in manifest["shards"]),
        "passed_through": report.passed_through, "reencoded": report.reencoded, "skipped": dict(report.skipped),
        "messages": report.messages, "ignored_files": report.ignored_files, "ignored_fields": sorted(report.ignored_fields),
        "renamed": report.renamed, "seconds": round(time.perf_counter() - started, 3), "manifest": manifest,
    }  # fmt: skip


def _hw(value: int | Sequence[int]) -> tuple[int, int]:
    hw = (int(value), int(value)) if isinstance(value, (int, np.integer)) else tuple(int(v) for v in value)
    if len(hw) != 2 or not all(8 <= v <= 8192 for v in hw):
        raise UsageError(f"image size {value!r}: need 8..8192 pixels (an int or (height, width))")
    return hw  # type: ignore[return-value]
