"""The streaming loader: episode-segment shards -> contract batches (``docs/views.md``).

:func:`build_loader` returns a :class:`SegmentLoader` that yields batches
following ``docs/batch_contract.md``. The WebDataset pipeline, in each worker:

1. shard URLs: ``ResampledShards(deterministic=True)`` (training: an endless
   stream, seeded per rank and worker, no node splitter needed) or, with
   ``resampled=False``, one pass over this rank's and worker's share;
2. read tars (:func:`ssltk.data.badness.read_shards`: bad shards counted once);
3. expand each segment into ``samples_per_segment`` samples on raw bytes
   (:class:`ssltk.data.sampling.SegmentSampler`), kept together as a group;
4. shuffle groups in a buffer of ``shuffle_buffer`` samples;
5. decode each needed ``(timestep, camera)`` of a group once, crop/resize and
   augment every slot independently (:mod:`ssltk.data.augment`);
6. batch inside the worker and attach ``skipped`` counts.

Epochs: each worker yields ``ceil(steps_per_epoch / num_workers)`` batches
and the loader stops after exactly ``steps_per_epoch``, so every rank takes
the same number of steps. Randomness comes from one generator per
``(seed, rank, worker, epoch)``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import webdataset as wds

from ssltk.batch import episode_id
from ssltk.data.augment import MIRRORED_EGO, AugmentConfig, FrameTransform, rig_mirror
from ssltk.data.shards.skips import SKIP_KINDS, SkipCounter, clean_worker_error
from ssltk.data.shards.reader import read_shards
from ssltk.data.decode import DecodeError, decode_jpeg
from ssltk.data.shards.format import SegmentMeta, read_manifest, resolve_shards
from ssltk.data.sampling import RawView, SegmentSampler, check_plan_fits
from ssltk.errors import SsltkError, UsageError
from ssltk.views import ViewPlan

__all__ = ["build_loader", "SegmentLoader", "DataInfo", "probe_data", "resolve_rank_world"]


COUNTS_ONLY = "__counts_only__"  # marks the end-of-stream record that carries only skip counts


# ---------------------------------------------------------------- context
class _Context:
    """State shared by the stages of one pipeline: seeds, rank, and the per-epoch generator."""

    def __init__(self, seed: int, rank: int, world: int, strict: bool, resampled: bool, n_urls: int) -> None:
        self.seed, self.rank, self.world = int(seed), rank, world
        self.strict, self.resampled, self.n_urls = strict, resampled, n_urls
        self.epoch = -1
        self.worker, self.num_workers = 0, 1
        self.rng = random.Random(0)
        self.counter = SkipCounter(strict)
        self.shards_since_output = 0

    def begin(self) -> None:
        """Start an epoch in this process (main or worker): new generator from (seed, rank, worker, epoch)."""
        info = torch.utils.data.get_worker_info()
        self.worker, self.num_workers = (info.id, info.num_workers) if info else (0, 1)
        self.epoch += 1
        # a string seed is hashed with SHA-512: the same stream on every machine and Python run
        self.rng = random.Random(f"ssltk/{self.seed}/{self.rank}/{self.worker}/{self.epoch}")
        self.shards_since_output = 0

    def shard_done(self) -> None:
        """Guard against an endless resampled stream that never yields (all data bad)."""
        self.shards_since_output += 1
        limit = max(100, 10 * self.n_urls)
        if self.resampled and self.shards_since_output >= limit:
            counts = {k: v for k, v in self.counter.counts.items() if v}
            raise UsageError(f"read {limit} shards in a row without one usable sample (skipped so far: {counts}); check the data")


class _WorkerSeed:
    """``worker_seed`` for ResampledShards with an explicit rank: ``rank * 1000 + worker``."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self) -> int:
        info = torch.utils.data.get_worker_info()
        return self.rank * 1000 + (info.id if info else 0)


class _FiniteShards(torch.utils.data.IterableDataset):
    """One pass over this rank's and worker's shards: ``urls[rank::world][worker::num_workers]``."""

    def __init__(self, urls: list[str], ctx: _Context) -> None:
        super().__init__()
        self.urls, self.ctx = urls, ctx

    def __iter__(self) -> Iterator[dict[str, Any]]:
        c = self.ctx
        for url in self.urls[c.rank :: c.world][c.worker :: c.num_workers]:
            yield {"url": url}


# ---------------------------------------------------------------- stages
class _Read:
    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        def counted() -> Iterator[dict[str, Any]]:
            for item in src:
                yield item
                self.ctx.shard_done()  # runs once the previous shard has been read through

        return read_shards(counted(), self.ctx.counter)


class _Expand:
    """Raw segment sample -> a group of ``k`` :class:`RawView` (metadata problems are skipped)."""

    def __init__(self, ctx: _Context, sampler: SegmentSampler, k: int) -> None:
        self.ctx, self.sampler, self.k = ctx, sampler, k

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[list[RawView]]:
        for sample in src:
            url, key = sample.get("__url__", "?"), sample.get("__key__", "?")
            if "json" not in sample:
                self.ctx.counter.skip("no_json", url, key)
                continue
            try:
                meta = SegmentMeta.from_json(sample["json"])
            except (ValueError, TypeError, KeyError) as exn:
                self.ctx.counter.skip("bad_json", url, key, str(exn).splitlines()[0][:200])
                continue
            if meta.length == 0:
                self.ctx.counter.skip("bad_json", url, key, "segment has no timesteps")
                continue
            yield self.sampler.expand(meta, sample, self.k, self.ctx.rng)


class _Shuffle:
    """Buffer shuffle of groups (``size`` groups; 0 or 1 = keep order).

    Output starts once the buffer holds ``size // 10`` groups; while it is not
    full, two items are read per item given out (as ``wds.shuffle`` does), so
    the first batch comes quickly and the buffer still fills up.
    """

    def __init__(self, ctx: _Context, size: int) -> None:
        self.ctx, self.size = ctx, size

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        if self.size <= 1:
            yield from src
            return
        rng, buf, initial = self.ctx.rng, [], max(1, self.size // 10)
        src = iter(src)
        for item in src:
            buf.append(item)
            if len(buf) < self.size:
                buf.extend(itertools.islice(src, 1))
            if len(buf) >= initial:
                j = rng.randrange(len(buf))
                buf[j], buf[-1] = buf[-1], buf[j]
                yield buf.pop()
        rng.shuffle(buf)
        yield from buf


@dataclass
class _Decoded:
    view: RawView
    cells: list[tuple[int, int, torch.Tensor]]  # (slot, camera, uint8 [3, S, S]) for every valid cell


class _Decode:
    """Decode a group's frames once each, then crop/resize/augment every cell of every sample.

    With augmentation off, a frame used by several cells (``t`` and ``t:aug``,
    or two samples of one segment) is also resized once.
    """

    def __init__(self, ctx: _Context, image_size: int, transform: FrameTransform, cameras: list[str]) -> None:
        self.ctx, self.size, self.transform = ctx, image_size, transform
        self.reuse = not transform.config.enabled
        self.flip_p = transform.config.rig_flip_p if transform.config.enabled else 0.0
        self.mirror = rig_mirror(list(cameras)) if self.flip_p else []

    def _decode_group(self, group: list[RawView]) -> dict:
        cache: dict = {}
        for view in group:
            for ref, data in view.images.items():
                if ref in cache:
                    continue
                try:
                    cache[ref] = decode_jpeg(data, self.size)
                except DecodeError as exn:
                    cache[ref] = None
                    field = f"f{ref[0]:03d}.{ref[1]}"
                    self.ctx.counter.skip("corrupt_image", view.url, view.key, f"{field}: {exn}")
        return cache

    def _mirrored(self, d: _Decoded) -> _Decoded:
        """The sample seen by the mirrored rig (``AugmentConfig.rig_flip_p``)."""
        ego = {k: ([-x for x in v] if k in MIRRORED_EGO else v) for k, v in d.view.ego.items()}
        cells = [(t, self.mirror[v], img.flip(-1)) for t, v, img in d.cells]
        return _Decoded(dataclasses.replace(d.view, ego=ego), cells)

    def __call__(self, src: Iterator[list[RawView]]) -> Iterator[list[_Decoded]]:
        rng = self.ctx.rng
        for group in src:
            cache = self._decode_group(group)
            views = [view for view in group if all(cache[ref] is not None for ref in view.images)]  # else corrupt
            cells = [(i, t, v, ref) for i, view in enumerate(views) for t, row in enumerate(view.refs)
                     for v, ref in enumerate(row) if ref is not None]  # fmt: skip
            if self.reuse:  # no random draws per cell: transform each distinct frame once, same shapes together
                refs = list(dict.fromkeys(ref for *_, ref in cells))
                done = dict(zip(refs, self.transform.many([cache[ref] for ref in refs], rng)))
                images = [done[ref] for *_, ref in cells]
            else:  # every cell its own draws, in cell order (as one transform call per cell would)
                images = self.transform.many([cache[ref] for *_, ref in cells], rng, [i for i, *_ in cells])
            out = [_Decoded(view, []) for view in views]
            for (i, t, v, _), img in zip(cells, images):
                out[i].cells.append((t, v, img))
            if self.flip_p:
                out = [self._mirrored(d) if rng.random() < self.flip_p else d for d in out]
            if out:
                self.ctx.shards_since_output = 0
                yield out


class _PlanCells(_Decode):
    """``_Decode`` for the device-decode path: plan each cell (bytes + draws); decoded in the main process."""

    def __call__(self, src: Iterator[list[RawView]]) -> Iterator[list]:
        from ssltk.data.device_decode import plan_cells

        return plan_cells(self, src)


class _Batch:
    """Flatten groups into batches of ``batch_size`` contract dicts (the last partial one if ``partial``)."""

    def __init__(
        self, ctx: _Context, plan: ViewPlan, batch_size: int, image_size: int, partial: bool, ego_fields: list[str]
    ) -> None:
        self.ctx, self.plan, self.batch_size, self.partial = ctx, plan, batch_size, partial
        self.image_size, self.ego_fields = image_size, ego_fields
        self.bytes_mode = False  # True: cells are planned JPEG bytes, decoded in the main process (device_decode)

    def __call__(self, src: Iterator[list[_Decoded]]) -> Iterator[dict[str, Any]]:
        buf: list[_Decoded] = []
        for group in src:
            for item in group:
                buf.append(item)
                if len(buf) == self.batch_size:
                    yield self.collate(buf)
                    buf = []
        if buf and self.partial:
            yield self.collate(buf)
        pending = self.ctx.counter.take()
        if any(pending.values()):  # skips after this worker's last batch: a counts-only record
            yield {COUNTS_ONLY: True, "skipped": pending}

    def collate(self, items: list[_Decoded]) -> dict[str, Any]:
        T, V, S = len(self.plan.slots), len(self.plan.cameras), self.image_size
        valid = np.zeros((len(items), T, V), dtype=bool)
        if self.bytes_mode:
            from ssltk.data.device_decode import pack_cells

            return self._fields(items, None, valid, pack_cells(items, valid))
        # Each cell (channels-last from the resize kernel) is copied once, by numpy, into the
        # contract's [3, S, S] layout: ~3x faster for uint8 than torch's permuting copy or
        # stack (measured at 128 px, 1 thread).
        frames = _batch_tensor((len(items), T, V, 3, S, S))
        out = frames.numpy()
        for b, item in enumerate(items):
            for t, v, img in item.cells:
                np.copyto(out[b, t, v], img.numpy())
                valid[b, t, v] = True
        out[~valid] = 0
        return self._fields(items, frames, valid, {})

    def _fields(self, items: list, frames: Any, valid: np.ndarray, extra: dict[str, Any]) -> dict[str, Any]:
        T = len(self.plan.slots)
        views = [it.view for it in items]
        # The small fields travel as numpy arrays, pickled by value: a worker sends every
        # tensor through its own shared-memory file and socket handshake (~0.4 ms each in
        # the main process, measured), which only pays off for ``frames``.
        # :func:`_small_fields_as_tensors` turns them back into the contract's tensors.
        return {
            "frames": frames,
            "mask": valid,
            "episode": np.array([[episode_id(v.episode)] * T for v in views], dtype=np.int64),
            "frame_index": np.array([v.frame_index for v in views], dtype=np.int64),
            "timestamp": np.array([v.timestamp for v in views], dtype=np.float64),
            "dt": np.array([v.dt for v in views], dtype=np.float32),
            "slots": list(self.plan.slots),
            "cameras": list(self.plan.cameras),
            "ego": {f: np.array([v.ego[f] for v in views], dtype=np.float32) for f in self.ego_fields},
            "keys": [v.key for v in views],
            "skipped": self.ctx.counter.take(),
            **extra,
        }


def _small_fields_as_tensors(batch: dict[str, Any], pin: bool) -> dict[str, Any]:
    """The batch as the contract has it: the numpy fields of :meth:`_Batch.collate` as tensors.

    ``pin``: pin them too (the DataLoader's pinning step passes numpy arrays through), so every
    field's copy to the GPU can be asynchronous.
    """

    def tensor(a: Any) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t.pin_memory() if pin else t

    for name in ("mask", "episode", "frame_index", "timestamp", "dt"):
        batch[name] = tensor(batch[name])
    batch["ego"] = {f: tensor(v) for f, v in batch["ego"].items()}
    return batch


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 tensor; inside a DataLoader worker, in shared memory (as ``default_collate`` does).

    A batch built anywhere else (e.g. from a numpy array) is copied into shared
    memory or pickled by value on its way to the main process: measured 20 %
    fewer frames/s with 2 workers on 2 cores.
    """
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    storage = torch.empty(0, dtype=torch.uint8)._typed_storage()._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)


class _SegmentPipeline(wds.DataPipeline):
    """A ``wds.DataPipeline`` that starts a new per-epoch generator before each pass."""

    def __init__(self, ctx: _Context, *stages: Any) -> None:
        super().__init__(*stages)
        self.ctx = ctx

    def iterator1(self):
        self.ctx.begin()
        return super().iterator1()


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
def resolve_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values, else env ``RANK``/``WORLD_SIZE``, else an initialised torch.distributed, else (0, 1)."""
    if rank is None and world_size is None:
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        elif torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            rank, world_size = 0, 1
    rank, world_size = int(rank or 0), int(world_size or 1)
    if not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


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
                    yield _small_fields_as_tensors(batch, self.pin)
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

    ``spec``: a shard folder, file, glob, brace pattern or list (``resolve_shards``).
    ``resampled=True`` (training): endless resampled shards, exactly
    ``steps_per_epoch`` batches per epoch on every rank. ``resampled=False``:
    one pass over this rank's share, last partial batch kept unless ``drop_last``
    (``steps_per_epoch`` is ignored).
    Defaults that depend on the mode: ``shuffle_buffer`` 1000 samples (training)
    or 0, ``augment`` on (training) or off. ``rank``/``world_size`` default to
    env ``RANK``/``WORLD_SIZE`` or torch.distributed. ``strict`` stops at the
    first bad shard/sample with a one-line :class:`BadDataError`. ``decode_device``: decode
    the JPEGs in this process on that device, in batches (:mod:`ssltk.data.device_decode`;
    ``frames`` then arrive on it); None (default): decode in the workers.
    """
    _check_args(batch_size, image_size, samples_per_segment, steps_per_epoch, resampled, num_workers)
    info = probe_data(spec, strict=strict)
    check_plan_fits(plan, info.first, cameras=info.cameras, segment_length=info.segment_length, where=info.where)
    rank, world = resolve_rank_world(rank, world_size)
    aug = AugmentConfig.coerce(augment, default=resampled)
    buffer = (1000 if resampled else 0) if shuffle_buffer is None else int(shuffle_buffer)
    partial = (not resampled) if drop_last is None else not drop_last

    ctx = _Context(seed, rank, world, strict, resampled, len(info.urls))
    if resampled:
        source = wds.ResampledShards(info.urls, seed=int(seed), deterministic=True, worker_seed=_WorkerSeed(rank))
    else:
        source = _FiniteShards(info.urls, ctx)
    k = samples_per_segment
    sampler = SegmentSampler(plan, ego_fields=info.ego_fields)
    decode_stage, batcher = _Decode, _Batch(ctx, plan, batch_size, image_size, partial, info.ego_fields)
    if decode_device is not None:
        decode_stage, batcher.bytes_mode = _PlanCells, True
    pipe = _SegmentPipeline(
        ctx,
        source,
        _Read(ctx),
        _Expand(ctx, sampler, k),
        _Shuffle(ctx, max(0, buffer) // k),
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
        from ssltk.data.device_decode import DeviceDecoder

        seg.device_decoder = DeviceDecoder(decode_device, image_size)
    return seg
