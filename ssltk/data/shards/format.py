"""The episode-shard format (``docs/episode_shards.md``), version 1.

One WebDataset sample per *episode segment*: ``T`` consecutive timesteps of one
episode with every camera, plus one JSON with the segment's metadata.

* key: ``{episode}/s{start:06d}`` (episode names use ``[A-Za-z0-9_-]``; WebDataset
  splits a member name at the first dot of its basename, so no dots);
* images: ``f{i:03d}.{camera}.jpg`` (or ``.png``) for local timestep ``i``;
  camera names are lower-case ``[a-z0-9_-]`` (WebDataset lower-cases fields);
* ``json``: :class:`SegmentMeta`.

Shards are ``shard-NNNNNN.tar`` next to a ``manifest.json``; they are written
under a temporary name and renamed when complete, with tar ``mtime=0`` so the
same input gives byte-identical shards.
"""

from __future__ import annotations

import glob as _glob
import io
import json
import os
import re
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ssltk.fileio import sha256_file
from ssltk.errors import UsageError

FORMAT = "ssltk-episode-segment"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_PATTERN = "shard-{:06d}.tar"
EPISODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
CAMERA_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")
EGO_FIELDS = ("speed", "yaw_rate", "steering", "accel", "x", "y", "heading", "lane_offset")


def check_episode_name(name: str) -> str:
    if not EPISODE_RE.match(name or ""):
        raise UsageError(f"episode name {name!r} must match [A-Za-z0-9][A-Za-z0-9_-]* (no dots or spaces)")
    return name


def check_camera_name(name: str) -> str:
    if not CAMERA_RE.match(name or ""):
        raise UsageError(f"camera name {name!r} must be lower-case [a-z0-9_-] (no dots; WebDataset lower-cases fields)")
    return name


def sample_key(episode: str, start: int) -> str:
    return f"{episode}/s{start:06d}"


def frame_field(i: int, camera: str, ext: str = "jpg") -> str:
    return f"f{i:03d}.{camera}.{ext}"


def segment_starts(n: int, length: int, overlap: int) -> list[int]:
    """First timestep of each segment that cuts an episode of ``n`` timesteps.

    Segments have ``min(n, length)`` timesteps and start every ``length - overlap``
    timesteps; the last one is aligned to the episode's end. Every pair of
    timesteps at most ``overlap`` apart lies inside at least one segment.
    """
    if length < 1 or not 0 <= overlap < length:
        raise UsageError(f"segment length {length} and overlap {overlap}: need length >= 1 and 0 <= overlap < length")
    if n <= length:
        return [0]
    starts = list(range(0, n - length + 1, length - overlap))
    if starts[-1] + length < n:
        starts.append(n - length)
    return starts


@dataclass
class SegmentMeta:
    """Metadata of one segment (the sample's ``json`` field)."""

    episode: str
    start: int  # index of the segment's first timestep within the episode
    frames: list[int]  # frame number of each timestep (as in the source data)
    timestamps: list[float]  # seconds, one per timestep
    cameras: list[str]
    image_size: list[int]  # [H, W]
    missing: dict[str, list[int]] = field(default_factory=dict)  # camera -> local timesteps without image
    ego: dict[str, list[float | None]] = field(default_factory=dict)  # field -> value per timestep (None unknown)
    fps: float | None = None
    episode_length: int | None = None  # timesteps in the whole episode
    ext: str = "jpg"
    format: str = FORMAT
    version: int = FORMAT_VERSION

    @property
    def length(self) -> int:
        return len(self.frames)

    def has_frame(self, i: int, camera: str) -> bool:
        return camera in self.cameras and i not in self.missing.get(camera, ())

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str | dict) -> "SegmentMeta":
        obj = data if isinstance(data, dict) else json.loads(data)
        if obj.get("format") != FORMAT:
            raise ValueError(f"not an ssltk episode segment (format={obj.get('format')!r})")
        if int(obj.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(
                f"segment format version {obj['version']} is newer than this ssltk reads ({FORMAT_VERSION}); upgrade ssltk"
            )
        known = {f for f in cls.__dataclass_fields__}
        meta = cls(**{k: v for k, v in obj.items() if k in known})
        meta.missing = {k: list(v) for k, v in meta.missing.items()}
        if len(meta.timestamps) != len(meta.frames):
            raise ValueError(f"segment {meta.episode}/{meta.start}: {len(meta.frames)} frames but {len(meta.timestamps)} timestamps")
        return meta


def encode_segment(meta: SegmentMeta, images: dict[tuple[int, str], bytes]) -> dict[str, Any]:
    """A WebDataset sample dict for ``meta`` and encoded ``images[(local_t, camera)]``."""
    sample: dict[str, Any] = {"__key__": sample_key(meta.episode, meta.start), "json": meta.to_json()}
    for (i, cam), data in images.items():
        sample[frame_field(i, cam, meta.ext)] = data
    return sample


class ShardSetWriter:
    """Write segments into ``out_dir/shard-NNNNNN.tar`` plus ``manifest.json``, atomically.

    Each shard is written as ``*.tar.tmp`` and renamed once closed; the manifest
    is written last. If the ``with`` block raises, temporary files are removed
    and no manifest is written, so a failed run never looks complete.
    """

    def __init__(
        self,
        out_dir: str | Path,
        *,
        max_segments: int = 256,
        max_bytes: int = 256 << 20,
        overwrite: bool = False,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out_dir)
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"output {self.out} exists and is not a folder")
        existing = sorted(self.out.glob("shard-*.tar")) + ([self.out / MANIFEST] if (self.out / MANIFEST).exists() else [])
        if existing and not overwrite:
            raise UsageError(f"output folder {self.out} already has shards; pass --overwrite or choose another --out")
        self.out.mkdir(parents=True, exist_ok=True)
        for old in existing:
            old.unlink()
        self.max_segments, self.max_bytes = max_segments, max_bytes
        self.info = dict(info or {})
        self.shards: list[dict[str, Any]] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None
        self._count = self._bytes = self._frames = 0
        self._episodes: set[str] = set()
        self._all_episodes: set[str] = set()
        self._cameras: list[str] = []
        self._ego: set[str] = set()

    def __enter__(self) -> "ShardSetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self) -> None:
        name = SHARD_PATTERN.format(len(self.shards))
        self._tmp = self.out / (name + ".tmp")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)
        self._count = self._bytes = self._frames = 0
        self._episodes = set()

    def _finish(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        final = self._tmp.with_suffix("")  # drop ".tmp"
        os.replace(self._tmp, final)
        self.shards.append(
            {
                "name": final.name,
                "segments": self._count,
                "frames": self._frames,
                "episodes": len(self._episodes),
                "bytes": final.stat().st_size,
                "sha256": sha256_file(final),
            }
        )
        self._tar = self._tmp = None

    def _add(self, name: str, data: bytes) -> None:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime, ti.mode = len(data), 0, 0o444
        ti.uname = ti.gname = "ssltk"
        self._tar.addfile(ti, io.BytesIO(data))

    def write(self, meta: SegmentMeta, images: dict[tuple[int, str], bytes]) -> None:
        """Append one segment (a new shard starts when the current one is full)."""
        check_episode_name(meta.episode)
        for cam in meta.cameras:
            check_camera_name(cam)
        if self._tar is not None and (self._count >= self.max_segments or self._bytes >= self.max_bytes):
            self._finish()
        if self._tar is None:
            self._open()
        sample = encode_segment(meta, images)
        key = sample.pop("__key__")
        for fname in sorted(sample):  # sorted: deterministic member order
            data = sample[fname]
            self._add(f"{key}.{fname}", data)
            self._bytes += len(data)
        self._count += 1
        self._frames += len(images)
        self._episodes.add(meta.episode)
        self._all_episodes.add(meta.episode)
        for cam in meta.cameras:
            if cam not in self._cameras:
                self._cameras.append(cam)
        self._ego.update(meta.ego)

    def close(self) -> dict[str, Any]:
        """Finish the last shard and write the manifest; return it."""
        self._finish()
        if not self.shards:
            raise UsageError(f"nothing was written to {self.out}: no segments")
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "shards": self.shards,
            "segments": sum(s["segments"] for s in self.shards),
            "frames": sum(s["frames"] for s in self.shards),
            "episodes": len(self._all_episodes),
            "cameras": self._cameras,
            "ego_fields": sorted(self._ego),
            **self.info,
        }
        tmp = self.out / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.out / MANIFEST)
        return manifest

    def abort(self) -> None:
        """Remove everything this writer created (temporary and finished shards)."""
        if self._tar is not None:
            try:
                self._tar.close()
            except Exception:
                pass
            self._tmp.unlink(missing_ok=True)
            self._tar = None
        for s in self.shards:
            (self.out / s["name"]).unlink(missing_ok=True)
        self.shards = []


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def resolve_shards(spec: str | Path | Iterable[str]) -> list[str]:
    """Expand a data spec to shard paths: a folder, a ``.tar`` path, a glob, a brace pattern, or a list.

    A folder with ``manifest.json`` yields its shards in manifest order; otherwise
    its ``*.tar`` files sorted by name. Raises ``UsageError`` when nothing matches.
    """
    if not isinstance(spec, (str, Path)):
        out: list[str] = []
        for s in spec:
            out += resolve_shards(s)
        return out
    text = str(spec)
    if "://" in text or text.startswith("pipe:"):
        return [text]  # remote URL: WebDataset opens it
    path = Path(text).expanduser()
    if path.is_dir():
        manifest = read_manifest(path)
        if manifest is not None:
            shards = [str(path / s["name"]) for s in manifest.get("shards", [])]
        else:
            shards = sorted(str(p) for p in path.glob("*.tar"))
        if not shards:
            raise UsageError(f"no shards (*.tar) in {path}; create some with `ssltk data synth` or `ssltk data pack`")
        return shards
    import braceexpand

    patterns = list(braceexpand.braceexpand(str(path)))
    out = []
    for pat in patterns:
        if any(ch in pat for ch in "*?["):
            out += sorted(_glob.glob(pat))
        elif Path(pat).is_file():
            out.append(pat)
        else:
            raise UsageError(f"data path {pat} does not exist")
    if not out:
        raise UsageError(f"no shards match {text}")
    return out
