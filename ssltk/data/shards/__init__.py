"""The shard wing: what is on disk and how it is read.

Owns the episode-shard format (:mod:`~ssltk.data.shards.format`: ``SegmentMeta``,
the atomic ``ShardSetWriter``, manifests, ``resolve_shards``), the one tar reader
and the sample/segment iterators built on it (:mod:`~ssltk.data.shards.reader`),
the skip kinds and their counts (:mod:`~ssltk.data.shards.skips`), packing raw
episode folders (:mod:`~ssltk.data.shards.pack`) and ``ssltk data inspect``
(:mod:`~ssltk.data.shards.inspect`). It needs nothing from the stream or synth
wings; both build on it.

The names a script usually needs are importable from here.
"""

from ssltk.data.shards.format import SegmentMeta, ShardSetWriter, read_manifest, resolve_shards
from ssltk.data.shards.reader import iter_segments

__all__ = ["SegmentMeta", "ShardSetWriter", "iter_segments", "read_manifest", "resolve_shards"]
