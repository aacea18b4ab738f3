"""The synth wing: procedural multi-camera driving episodes written as episode shards.

Owns the random worlds (:mod:`~ssltk.data.synth.road`: road and ego motion;
:mod:`~ssltk.data.synth.world`: traffic, roadside objects, light), the renderer
(:mod:`~ssltk.data.synth.render`), the generator's options
(:mod:`~ssltk.data.synth.params`: one ``SynthParams`` for the generator, the
cache and the CLI) and the episodes it writes (:mod:`~ssltk.data.synth.episodes`:
``ssltk data synth``), the built-in sets cached in the user cache
(:mod:`~ssltk.data.synth.cache`) and contact sheets of any shard set
(:mod:`~ssltk.data.synth.sheet`: ``ssltk data inspect --sheet``). It writes and
reads shards only through :mod:`ssltk.data.shards`.
"""

# Generate the built-in synthetic sets with several processes? Spawned workers re-import the
# parent's __main__, which breaks a user script without an `if __name__ == "__main__":`
# guard, so only the ssltk command line (whose entry point is guarded) turns this on;
# library calls generate in one process. (Also ``ssltk.data.PARALLEL``.)
PARALLEL = {"generation": False}
