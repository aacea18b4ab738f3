"""``embed``: frozen features of every (episode, timestep, camera) of a shard set, for downstream use.

One row per frame, with its keys (``episode``, ``timestep``, ``camera``), its ``frame`` number
and ``timestamp``, the ego fields (``ego_<field>``, NaN where unknown) and the feature vector.
Two formats, chosen by the output's suffix:

* ``FILE.parquet`` (needs pyarrow, ``pip install 'ssltk[parquet]'``): one table, the features
  in the column ``embedding`` (a fixed-size list of float32); the key-value metadata
  ``ssltk.embed`` records the bundle, its weights' sha256, the pool and the preprocessing;
* ``FILE.npy``: the features ``[N, D]`` float32, plus ``FILE.index.csv`` (row ``i`` of the index
  describes row ``i`` of the array) and ``FILE.json`` (the same metadata).

Segments are streamed and encoded batch by batch (memory is bounded by the batch, not the data);
frames seen twice in overlapping segments are written once. Everything is written under temporary
names and moved into place at the end: a failed run leaves nothing. Preprocessing is the bundle's
(its input size, mean and std), as in training; ``pool`` is one of the probe's readouts
(:data:`ssltk.probe.features.READOUTS`: ``gap``, the backbone's pooled output, or ``grid``, the
last feature map pooled to 2x2 cells).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ssltk.errors import UnknownNameError, UsageError

logger = logging.getLogger("ssltk.embed")
FORMATS = {".parquet": "parquet", ".npy": "npy"}
KEY_COLUMNS = ("episode", "timestep", "camera", "frame", "timestamp")


@dataclass
class EmbedResult:
    """What :func:`embed` wrote."""

    out: Path
    format: str
    rows: int
    dim: int
    pool: str
    cameras: list[str]
    ego_fields: list[str]
    files: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "format": self.format, "rows": self.rows, "dim": self.dim, "pool": self.pool,
                "cameras": self.cameras, "ego_fields": self.ego_fields, "files": [str(f) for f in self.files]}


def output_format(out: str | Path) -> str:
    suffix = Path(out).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--out {out}: name the file .parquet (one table) or .npy (array + .index.csv)")
    return FORMATS[suffix]


def output_files(out: Path, fmt: str) -> list[Path]:
    if fmt == "parquet":
        return [out]
    stem = out.with_suffix("")
    return [out, stem.with_name(stem.name + ".index.csv"), out.with_suffix(".json")]


def _frames(shards: Sequence[str], cameras: set[str] | None) -> Iterator[tuple[tuple, dict[str, float], bytes]]:
    """``((episode, timestep, camera, frame, timestamp), ego, jpeg bytes)`` once per frame."""
    from ssltk.data.shards.reader import iter_segments

    seen: set[tuple[str, int, str]] = set()
    for _url, meta, images in iter_segments(shards):
        for (i, cam), data in sorted(images.items()):
            if cameras is not None and cam not in cameras:
                continue
            key = (meta.episode, meta.start + i, cam)
            if key in seen or i >= meta.length:
                continue
            seen.add(key)
            ego = {k: (math.nan if v[i] is None else float(v[i])) for k, v in meta.ego.items() if i < len(v)}
            yield (*key, int(meta.frames[i]), float(meta.timestamps[i])), ego, data


def _peek(shards: Sequence[str]) -> tuple[list[str], list[str]]:
    """The cameras and ego fields of the data (from the shard manifests, else the first segment)."""
    from ssltk.data.shards import iter_segments, read_manifest

    cams: set[str] = set()
    ego: set[str] = set()
    for folder in sorted({str(Path(s).parent) for s in shards}):
        try:
            man = read_manifest(folder) or {}
        except (OSError, ValueError):
            man = {}
        cams.update(man.get("cameras") or [])
        ego.update(man.get("ego_fields") or [])
    if not cams:
        for _url, meta, _images in iter_segments(shards[:1]):
            cams.update(meta.cameras)
            ego.update(meta.ego)
            break
    return sorted(cams), sorted(ego)


class _NpyWriter:
    """Features streamed to a raw temp file, turned into ``.npy`` (header + data) at the end."""

    def __init__(self, files: list[Path], ego_fields: list[str], meta: dict[str, Any]) -> None:
        self.files, self.tmp = files, [f.with_name(f.name + ".tmp") for f in files]
        self.raw = open(self.tmp[0], "wb")
        self.index_file = open(self.tmp[1], "w", newline="")
        self.index = csv.writer(self.index_file)
        self.index.writerow(["row", *KEY_COLUMNS, *(f"ego_{k}" for k in ego_fields)])
        self.ego_fields, self.meta, self.rows, self.dim = ego_fields, meta, 0, None

    def write(self, keys: list[tuple], egos: list[dict[str, float]], feats: np.ndarray) -> None:
        self.dim = feats.shape[1]
        self.raw.write(np.ascontiguousarray(feats, dtype="<f4").tobytes())
        for key, ego in zip(keys, egos):
            self.index.writerow([self.rows, *key, *(ego.get(k, math.nan) for k in self.ego_fields)])
            self.rows += 1

    def finish(self) -> None:
        self.raw.close()
        self.index_file.close()
        with open(self.tmp[0], "rb") as raw, open(self.tmp[0].with_name(self.tmp[0].name + "2"), "wb") as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.dim or 0)}
            np.lib.format.write_array_header_1_0(f, header)
            shutil.copyfileobj(raw, f, 1 << 20)
        os.replace(self.tmp[0].with_name(self.tmp[0].name + "2"), self.tmp[0])
        self.tmp[2].write_text(json.dumps({**self.meta, "rows": self.rows, "dim": self.dim}, indent=2) + "\n")

    def abort(self) -> None:
        for f in (self.raw, self.index_file):
            f.close()


class _ParquetWriter:
    def __init__(self, files: list[Path], ego_fields: list[str], meta: dict[str, Any]) -> None:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("--out *.parquet needs pyarrow: pip install 'ssltk[parquet]' (or write .npy)") from None
        self.files, self.tmp = files, [files[0].with_name(files[0].name + ".tmp")]
        self.ego_fields, self.meta, self.rows, self.dim, self.writer = ego_fields, meta, 0, None, None

    def write(self, keys: list[tuple], egos: list[dict[str, float]], feats: np.ndarray) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.dim = feats.shape[1]
        cols = list(zip(*keys))
        arrays = {
            "episode": pa.array(cols[0], pa.string()), "timestep": pa.array(cols[1], pa.int64()),
            "camera": pa.array(cols[2], pa.string()), "frame": pa.array(cols[3], pa.int64()),
            "timestamp": pa.array(cols[4], pa.float64()),
            **{f"ego_{k}": pa.array([e.get(k, math.nan) for e in egos], pa.float64()) for k in self.ego_fields},
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(feats.astype(np.float32).ravel()), self.dim),
        }  # fmt: skip
        table = pa.table(arrays)
        if self.writer is None:
            schema = table.schema.with_metadata({"ssltk.embed": json.dumps(self.meta)})
            self.writer = pq.ParquetWriter(str(self.tmp[0]), schema)
        self.writer.write_table(table.replace_schema_metadata(self.writer.schema.metadata))
        self.rows += len(keys)

    def finish(self) -> None:
        if self.writer is None:
            raise UsageError("no frames to embed in the data (check --camera)")
        self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()


def embed(
    bundle: str | Path,
    data: Any = None,
    out: str | Path = "embeddings.parquet",
    *,
    pool: str = "gap",
    cameras: Sequence[str] | None = None,
    batch_size: int = 64,
    device: str | None = "auto",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> EmbedResult:
    """Write the frozen features of every frame of ``data`` (default: the built-in probe split) to ``out``.

    ``progress(rows_written)`` is called after each batch. See the module docstring for the formats.
    """
    from ssltk.bundle import load_backbone
    from ssltk.fileio import sha256_file
    from ssltk.probe.features import READOUTS, ModelExtractor
    from ssltk.probe.frames import _decode_other, resize_uint8
    from ssltk.device import resolve_device
    from ssltk.probe.run import resolve_data

    out = Path(out)
    fmt = output_format(out)
    if pool not in READOUTS:
        raise UnknownNameError("--pool", pool, READOUTS, hint="the probe's readouts")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: must be >= 1")
    files = output_files(out, fmt)
    existing = [f for f in files if f.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]} exists; pass --overwrite or choose another --out")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: no folder {out.parent}")
    dev = resolve_device(device)
    model, pre = load_backbone(bundle, dev)
    shards = resolve_data(data)
    all_cams, ego_fields = _peek(shards)
    if cameras:
        for cam in cameras:
            if all_cams and cam not in all_cams:
                raise UnknownNameError("camera", cam, all_cams, hint="cameras in the data")
    size = tuple(int(v) for v in pre["input_size"][-2:])
    extractor = ModelExtractor("bundle", model, size=size, mean=pre["mean"], std=pre["std"],
                               interpolation=pre["interpolation"], device=dev, readout=pool)
    weights = Path(bundle) / "model.safetensors"
    meta = {
        "bundle": str(Path(bundle).resolve()), "weights_sha256": sha256_file(weights) if weights.is_file() else None,
        "pool": pool, "preprocess": pre, "data": [str(s) for s in shards], "columns": [*KEY_COLUMNS, *(f"ego_{k}" for k in ego_fields)],
    }  # fmt: skip
    writer = (_ParquetWriter if fmt == "parquet" else _NpyWriter)(files, ego_fields, meta)
    import simplejpeg
    import torch

    def flush(batch: list) -> None:
        frames = torch.empty((len(batch), 3, *size), dtype=torch.uint8)
        for n, (_key, _ego, data) in enumerate(batch):
            arr = simplejpeg.decode_jpeg(data, colorspace="RGB") if simplejpeg.is_jpeg(data) else _decode_other(data)
            frames[n] = resize_uint8(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1), size, pre["interpolation"])
        writer.write([k for k, _, _ in batch], [e for _, e, _ in batch], extractor(frames))
        batch.clear()
        if progress is not None:
            progress(writer.rows)

    try:
        batch: list = []
        for item in _frames(shards, set(cameras) if cameras else None):
            batch.append(item)
            if len(batch) == batch_size:
                flush(batch)
        if batch:
            flush(batch)
        if writer.rows == 0:
            raise UsageError("no frames to embed in the data (check --camera)")
        writer.finish()
        for tmp, final in zip(writer.tmp, files):
            os.replace(tmp, final)
    except BaseException:
        writer.abort()
        for tmp in writer.tmp:
            tmp.unlink(missing_ok=True)
            tmp.with_name(tmp.name + "2").unlink(missing_ok=True)
        raise
    return EmbedResult(out, fmt, writer.rows, int(writer.dim or 0), extractor.readout,
                       sorted(cameras) if cameras else all_cams, ego_fields, files)
