"""The streaming loader: episode-segment shards -> contract batches (``docs/views.md``).

:func:`build_loader` returns a :class:`SegmentLoader` that yields batches
following ``docs/batch_contract.md``. The WebDataset pipeline, in each worker:

1. shard URLs: ``ResampledShards(deterministic=True)`` (training: an endless
   stream, seeded per rank and worker, no node splitter needed) or, with
   ``resampled=False``, one pass over this rank's and worker's share;
2. read tars (:func:`ssltk.data.shards.reader.read_shards`: bad shards counted once);
3. expand each segment into ``samples_per_segment`` samples on raw bytes
   (:class:`ssltk.data.stream.sampling.SegmentSampler`), kept together as a group;
4. shuffle groups in a buffer of ``shuffle_buffer`` samples;
5. decode each needed ``(timestep, camera)`` of a group once, crop/resize and
   augment every slot independently (:mod:`ssltk.data.stream.cells`);
6. batch inside the worker and attach ``skipped`` counts.

The stages live beside this file: 1-4 in :mod:`~ssltk.data.stream.stages`, 5 in
:mod:`~ssltk.data.stream.cells` (or, decoding on the device,
:mod:`~ssltk.data.stream.device_decode`), 6 in :mod:`~ssltk.data.stream.batching`.

Epochs: each worker yields ``ceil(steps_per_epoch / num_workers)`` batches
and the loader stops after exactly ``steps_per_epoch``, so every rank takes
the same number of steps. Randomness comes from one generator per
``(seed, rank, worker, epoch)``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import webdataset as wds

from ssltk.data.shards.format import SegmentMeta, read_manifest, resolve_shards
from ssltk.data.shards.reader import read_shards
from ssltk.data.shards.skips import SKIP_KINDS, SkipCounter, clean_worker_error
from ssltk.data.stream.augment import AugmentConfig, FrameTransform
from ssltk.data.stream.batching import COUNTS_ONLY, Batch, small_fields_as_tensors
from ssltk.data.stream.cells import Decode
from ssltk.data.stream.device_decode import DeviceDecoder, PlanCells
from ssltk.data.stream.sampling import SegmentSampler, check_plan_fits
from ssltk.data.stream.stages import Context, Expand, FiniteShards, Read, SegmentPipeline, Shuffle, WorkerSeed
from ssltk.distributed import resolve_rank_world
from ssltk.errors import SsltkError, UsageError
from ssltk.views import ViewPlan

__all__ = ["build_loader", "SegmentLoader", "DataInfo", "probe_data"]


# ---------------------------------------------------------------- data probe
@dataclass
class DataInfo:
    """What the loader learns about the data at startup (manifest and first segments)."""

    urls: list[str]
    cameras: list[str]
    segment_length: int
    ego_fields: list[str]
    first: SegmentMeta
    where: str


def _manifest_for(spec: Any, urls: list[str]) -> dict[str, Any]:
    if isinstance(spec, (str, Path)) and Path(spec).is_dir():
        return read_manifest(spec) or {}
    if urls and "://" not in urls[0] and Path(urls[0]).parent.is_dir():
        return read_manifest(Path(urls[0]).parent) or {}
    return {}


def probe_data(spec: Any, *, strict: bool = False, max_segments: int = 32) -> DataInfo:
    """Resolve ``spec`` and read the manifest plus the first segments of the first readable shard."""
    urls = resolve_shards(spec)
    manifest = _manifest_for(spec, urls)
    metas: list[SegmentMeta] = []
    first_url = None
    for sample in read_shards(({"url": u} for u in urls), SkipCounter(strict)):
        if first_url is not None and sample["__url__"] != first_url:
            break  # only the first readable shard
        try:
            metas.append(SegmentMeta.from_json(sample["json"]))
        except (KeyError, ValueError, TypeError):
            continue
        first_url = sample["__url__"]
        if len(metas) >= max_segments:
            break
    if not metas:
        raise UsageError(f"no readable segment in {len(urls)} shard(s) of {spec}; is this ssltk episode-shard data?")
    cameras = list(manifest.get("cameras") or dict.fromkeys(c for m in metas for c in m.cameras))
    ego = list(manifest.get("ego_fields") or sorted({f for m in metas for f in m.ego}))
    length = int(manifest.get("segment_length") or max(m.length for m in metas))
    where = f" (segment_length {length} from {'the manifest' if manifest.get('segment_length') else 'the first segments'})"
    return DataInfo(urls, cameras, length, ego, metas[0], where)


# ---------------------------------------------------------------- loader
def _identity(x: Any) -> Any:
    return x


class SegmentLoader:
    """Iterable of contract batches; ``len()`` = ``steps_per_epoch`` for resampled training streams.

    ``skipped``: bad-data counts summed over every batch delivered so far (all workers).
    """

    def __init__(self, loader: Any, *, plan: ViewPlan, info: DataInfo, steps_per_epoch: int | None, settings: dict) -> None:
        self.loader, self.plan, self.info = loader, plan, info
        self.steps_per_epoch = steps_per_epoch
        self.settings = settings
        self.pin = bool(settings.get("pin_memory")) and torch.cuda.is_available()  # as the DataLoader does
        self.skipped: Counter[str] = Counter({k: 0 for k in SKIP_KINDS})
        self.device_decoder = None  # a DeviceDecoder when frames are decoded in this process (--decode gpu)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.loader is None:
            raise UsageError("this loader was closed")
        error = None
        try:
            for batch in self.loader:
                for kind, n in batch.get("skipped", {}).items():
                    self.skipped[kind] += n
                if not batch.get(COUNTS_ONLY):
                    if self.device_decoder is not None:
                        batch = self.device_decoder.finish(batch, self.skipped)
                    yield small_fields_as_tensors(batch, self.pin)
        except SsltkError as exn:  # BadDataError (strict) or the no-usable-data guard, maybe from a worker
            error = clean_worker_error(exn)
            exn.__traceback__ = None  # torch's re-raise leaves an exception <-> frame cycle
        if error is not None:
            # No reference cycle may keep this loader (and so the DataLoader's persistent workers)
            # alive after the error: freed later by a GC pass, the shutdown waits 5 s per worker.
            try:
                raise error
            finally:
                error = None

    def close(self) -> None:
        """Stop the worker processes now (otherwise when the loader is garbage-collected)."""
        self.loader = None

    def __len__(self) -> int:
        if self.steps_per_epoch is None:
            raise TypeError("a finite (resampled=False) loader has no fixed length")
        return self.steps_per_epoch


def _check_args(batch_size: int, image_size: int, k: int, steps: int | None, resampled: bool, workers: int) -> None:
    for name, value in (("batch_size", batch_size), ("image_size", image_size), ("samples_per_segment", k)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise UsageError(f"{name} must be a positive int, got {value!r}")
    if batch_size % k:
        raise UsageError(f"batch_size {batch_size} must be a multiple of samples_per_segment {k} (whole segment groups per batch)")
    if resampled and (steps is None or steps <= 0):
        raise UsageError("steps_per_epoch (a positive int) is required for a resampled training stream")
    if workers < 0:
        raise UsageError(f"num_workers must be >= 0, got {workers}")


def build_loader(
    spec: Any,
    plan: ViewPlan,
    *,
    batch_size: int,
    image_size: int,
    steps_per_epoch: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
    shuffle_buffer: int | None = None,
    samples_per_segment: int = 1,
    augment: AugmentConfig | bool | dict | None = None,
    strict: bool = False,
    resampled: bool = True,
    rank: int | None = None,
    world_size: int | None = None,
    drop_last: bool | None = None,
    prefetch_factor: int | None = None,
    pin_memory: bool | None = None,
    decode_device: torch.device | str | None = None,
) -> SegmentLoader:
    """A loader of contract batches from episode-segment shards, laid out by ``plan``.

    ``spec``: a shard folder, file, glob, brace pattern or list (``resolve_shards``), or the
    :class:`DataInfo` that :func:`probe_data` returned for it (no second probe, no plan check).
    ``resampled=True`` (training): endless resampled shards, exactly
    ``steps_per_epoch`` batches per epoch on every rank. ``resampled=False``:
    one pass over this rank's share, last partial batch kept unless ``drop_last``
    (``steps_per_epoch`` is ignored).
    Defaults that depend on the mode: ``shuffle_buffer`` 1000 samples (training)
    or 0, ``augment`` on (training) or off. ``rank``/``world_size`` default to
    env ``RANK``/``WORLD_SIZE`` or torch.distributed. ``strict`` stops at the
    first bad shard/sample with a one-line :class:`BadDataError`. ``decode_device``: decode
    the JPEGs in this process on that device, in batches (:mod:`ssltk.data.stream.device_decode`;
    ``frames`` then arrive on it); None (default): decode in the workers.
    """
    _check_args(batch_size, image_size, samples_per_segment, steps_per_epoch, resampled, num_workers)
    if isinstance(spec, DataInfo):  # probed, and the plan checked against it, by the caller (the trainer)
        info = spec
    else:
        info = probe_data(spec, strict=strict)
        check_plan_fits(plan, info.first, cameras=info.cameras, segment_length=info.segment_length, where=info.where)
    rank, world = resolve_rank_world(rank, world_size)
    aug = AugmentConfig.coerce(augment, default=resampled)
    buffer = (1000 if resampled else 0) if shuffle_buffer is None else int(shuffle_buffer)
    partial = (not resampled) if drop_last is None else not drop_last

    ctx = Context(seed, rank, world, strict, resampled, len(info.urls))
    if resampled:
        source = wds.ResampledShards(info.urls, seed=int(seed), deterministic=True, worker_seed=WorkerSeed(rank))
    else:
        source = FiniteShards(info.urls, ctx)
    k = samples_per_segment
    sampler = SegmentSampler(plan, ego_fields=info.ego_fields)
    decode_stage, batcher = Decode, Batch(ctx, plan, batch_size, image_size, partial, info.ego_fields)
    if decode_device is not None:
        decode_stage, batcher.bytes_mode = PlanCells, True
    pipe = SegmentPipeline(
        ctx,
        source,
        Read(ctx),
        Expand(ctx, sampler, k),
        Shuffle(ctx, max(0, buffer) // k),
        decode_stage(ctx, image_size, FrameTransform(image_size, aug), plan.cameras),
        batcher,
    )
    workers = max(1, num_workers)
    if resampled:
        pipe = pipe.with_epoch(math.ceil(steps_per_epoch / workers))  # batches per worker
    kw: dict[str, Any] = {}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=prefetch_factor or 2)
    pin = torch.cuda.is_available() if pin_memory is None else pin_memory
    loader = wds.WebLoader(pipe, batch_size=None, num_workers=num_workers, collate_fn=_identity, pin_memory=pin, **kw)
    if resampled:
        loader = loader.with_epoch(steps_per_epoch)  # exactly this many per epoch on every rank
    settings = {
        "batch_size": batch_size, "image_size": image_size, "steps_per_epoch": steps_per_epoch,
        "num_workers": num_workers, "seed": seed, "shuffle_buffer": buffer, "samples_per_segment": k,
        "augment": aug.to_dict(), "strict": strict, "resampled": resampled, "rank": rank, "world_size": world,
        "shards": len(info.urls), "pin_memory": pin, "decode": str(decode_device) if decode_device is not None else "cpu",
    }  # fmt: skip
    seg = SegmentLoader(loader, plan=plan, info=info, steps_per_epoch=steps_per_epoch if resampled else None, settings=settings)
    if decode_device is not None:
        seg.device_decoder = DeviceDecoder(decode_device, image_size)
    return seg
