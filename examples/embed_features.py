"""Frozen features of every frame of a shard set, read back with pandas-free tools.

    python examples/embed_features.py OUT/ SHARDS/ [FEATURES.parquet|FEATURES.npy]
"""

import csv
import sys
from pathlib import Path

import numpy as np

import ssltk


def main(bundle: str, shards: str, out: str = "features.npy") -> np.ndarray:
    result = ssltk.embed(bundle, data=shards, out=out, pool="gap", batch_size=64, overwrite=True)
    print(f"{result.rows} frames x {result.dim} features, cameras {result.cameras}, ego {result.ego_fields}")
    if result.format == "parquet":  # one table: keys, ego_* columns and the embedding column
        import pyarrow.parquet as pq

        table = pq.read_table(result.out)
        features = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        first = {name: table.column(name)[0].as_py() for name in ("episode", "timestep", "camera")}
    else:  # FILE.npy [N, D] float32 + FILE.index.csv: row i of the index describes row i of the array
        features = np.load(result.out)
        with open(Path(result.out).with_suffix(".index.csv"), newline="") as f:
            row = next(csv.DictReader(f))
        first = {name: row[name] for name in ("episode", "timestep", "camera")}
    print(f"row 0 is {first}: |feature| = {np.linalg.norm(features[0]):.3f}")
    return features


if __name__ == "__main__":
    main(*sys.argv[1:4])
