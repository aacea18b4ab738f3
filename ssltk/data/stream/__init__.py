"""The stream wing: episode shards -> training batches (``docs/views.md``, ``docs/batch_contract.md``).

Owns :func:`~ssltk.data.stream.pipeline.build_loader` and the loader it returns
(:mod:`~ssltk.data.stream.pipeline`), the worker stages in pipeline order
(:mod:`~ssltk.data.stream.stages`: shard source, read, expand, shuffle;
:mod:`~ssltk.data.stream.cells`: decode and augment each cell;
:mod:`~ssltk.data.stream.batching`: contract batches and skip counts), which frames a
sample uses (:mod:`~ssltk.data.stream.sampling`), the JPEG decoder
(:mod:`~ssltk.data.stream.decode`), decoding on the training device
(:mod:`~ssltk.data.stream.device_decode`) and the frame geometry and augmentations
(:mod:`~ssltk.data.stream.augment`). It reads shards only through
:mod:`ssltk.data.shards`.
"""
