"""Episode data: the shard format, synthetic episodes, packing, inspection and streaming views."""
