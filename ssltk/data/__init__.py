"""Episode data: the shard format, synthetic episodes, packing, inspection and streaming views."""

# Generate the built-in synthetic sets with several processes? Spawned workers re-import the
# parent's __main__, which breaks a user script without an `if __name__ == "__main__":`
# guard, so only the ssltk command line (whose entry point is guarded) turns this on;
# library calls generate in one process.
PARALLEL = {"generation": False}
