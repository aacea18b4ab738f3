"""The synth wing: procedural multi-camera driving episodes written as episode shards.

Owns the random worlds (:mod:`~ssltk.data.synth.world`), the renderer
(:mod:`~ssltk.data.synth.render`), the episodes the generator writes
(:mod:`~ssltk.data.synth.episodes`: ``ssltk data synth``), the built-in sets cached in the user cache
(:mod:`~ssltk.data.synth.cache`) and contact sheets of any shard set
(:mod:`~ssltk.data.synth.sheet`: ``ssltk data inspect --sheet``). It writes and
reads shards only through :mod:`ssltk.data.shards`.
"""
