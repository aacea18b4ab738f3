"""The worker stages before decoding: shard source, read, expand, shuffle, and the per-epoch context.

Every stage of one pipeline shares a :class:`Context`: the seeds, this
process's rank and DataLoader worker, the per-epoch generator (one per
``(seed, rank, worker, epoch)``) and the worker's skip counts.
:class:`SegmentPipeline` starts a new epoch before each pass.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Iterator

import torch
import webdataset as wds

from ssltk.data.shards.format import SegmentMeta
from ssltk.data.shards.reader import read_shards
from ssltk.data.shards.skips import SkipCounter
from ssltk.data.stream.sampling import RawView, SegmentSampler
from ssltk.errors import UsageError, one_line

__all__ = ["Context", "WorkerSeed", "FiniteShards", "Read", "Expand", "Shuffle", "SegmentPipeline"]


class Context:
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


class WorkerSeed:
    """``worker_seed`` for ResampledShards with an explicit rank: ``rank * 1000 + worker``."""

    def __init__(self, rank: int) -> None:
        self.rank = rank

    def __call__(self) -> int:
        info = torch.utils.data.get_worker_info()
        return self.rank * 1000 + (info.id if info else 0)


class FiniteShards(torch.utils.data.IterableDataset):
    """One pass over this rank's and worker's shards: ``urls[rank::world][worker::num_workers]``."""

    def __init__(self, urls: list[str], ctx: Context) -> None:
        super().__init__()
        self.urls, self.ctx = urls, ctx

    def __iter__(self) -> Iterator[dict[str, Any]]:
        c = self.ctx
        for url in self.urls[c.rank :: c.world][c.worker :: c.num_workers]:
            yield {"url": url}


class Read:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        def counted() -> Iterator[dict[str, Any]]:
            for item in src:
                yield item
                self.ctx.shard_done()  # runs once the previous shard has been read through

        return read_shards(counted(), self.ctx.counter)


class Expand:
    """Raw segment sample -> a group of ``k`` :class:`RawView` (metadata problems are skipped)."""

    def __init__(self, ctx: Context, sampler: SegmentSampler, k: int) -> None:
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
                self.ctx.counter.skip("bad_json", url, key, one_line(exn)[:200])
                continue
            if meta.length == 0:
                self.ctx.counter.skip("bad_json", url, key, "segment has no timesteps")
                continue
            yield self.sampler.expand(meta, sample, self.k, self.ctx.rng)


class Shuffle:
    """Buffer shuffle of groups (``size`` groups; 0 or 1 = keep order).

    Output starts once the buffer holds ``size // 10`` groups; while it is not
    full, two items are read per item given out (as ``wds.shuffle`` does), so
    the first batch comes quickly and the buffer still fills up.
    """

    def __init__(self, ctx: Context, size: int) -> None:
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


class SegmentPipeline(wds.DataPipeline):
    """A ``wds.DataPipeline`` that starts a new per-epoch generator before each pass."""

    def __init__(self, ctx: Context, *stages: Any) -> None:
        super().__init__(*stages)
        self.ctx = ctx

    def iterator1(self):
        self.ctx.begin()
        return super().iterator1()
