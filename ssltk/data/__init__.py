"""Episode data in three wings, each a subpackage that says what it owns (``docs/data.md``, "Where the code lives").

* :mod:`ssltk.data.shards`: the episode-shard format, the one tar reader and the
  sample/segment iterators built on it, skip counts, ``data pack`` and ``data inspect``;
* :mod:`ssltk.data.stream`: the training stream, shards -> contract batches
  (``build_loader``: sampling, decode, augment, batching);
* :mod:`ssltk.data.synth`: the synthetic driving world, its renderer, the
  generated episodes (``data synth``), the cached built-in sets and contact sheets.

``stream`` and ``synth`` build on ``shards``; neither imports the other.
"""

from ssltk.data.synth import PARALLEL

__all__ = ["PARALLEL"]
