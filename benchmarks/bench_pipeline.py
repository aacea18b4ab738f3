"""Loader throughput against a decode-only bound measured in the same run.

    python benchmarks/bench_pipeline.py                  # pairs and clips, 0 workers
    python benchmarks/bench_pipeline.py --workers 2      # same, 2 DataLoader workers
    python benchmarks/bench_pipeline.py --decoders       # simplejpeg vs torchvision vs PIL

For each view plan it generates textured JPEG shards in a temp folder, then

* pipeline: frames/s delivered by ``build_loader`` (decoded, resized, batched;
  augmentation off unless ``--augment [default|geo]``), counted as valid cells (``mask.sum()``),
  timed after a warm-up; also the frames it actually decoded (a frame shared by
  several samples of one segment, e.g. overlapping clips, is decoded once);
* bound: the same number of JPEGs, as bytes in memory, decoded by the same
  ``decode_jpeg(bytes, size)`` in the same number of processes;

and prints the median of ``--repeats`` runs of each, the ratios
delivered / bound (target >= 0.8) and decoded / bound, and the spread of the per-run ratios (each
run against the bound measured right after it: on a shared machine single runs swing ±5 %). Numbers vary with machine load; compare within one run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ssltk.data.stream.decode import DECODERS, decode_jpeg
from ssltk.data.shards import SegmentMeta, ShardSetWriter, iter_segments, resolve_shards
from ssltk.data.stream.pipeline import build_loader
from ssltk.testing.shards import encode_jpeg
from ssltk.views import DeltaRange, ViewPlan, ViewRequest

# --augment NAME: the augmentation config it turns on (without --augment: off)
AUGMENT = {
    "default": {"enabled": True},  # per-frame's augmentation: every cell its own crop
    "geo": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5},  # the default recipe's views: one box per sample
}
PLANS = {
    "pairs": ViewRequest(deltas=(DeltaRange.parse("1-5"),)),
    "clips": ViewRequest(deltas=(DeltaRange(1, 1), DeltaRange(2, 2), DeltaRange(3, 3))),
}


def textured(rng: np.random.Generator, h: int, w: int, t: int) -> np.ndarray:
    """A driving-like frame: smooth gradients, blobs and noise (JPEG size close to real footage)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w * 200 + t, y / h * 180, (x + y + 3 * t) % 97 + 60], axis=-1)
    base += 40 * np.sin(x / 7.0 + t * 0.3)[..., None] * np.cos(y / 11.0)[..., None]
    base += rng.normal(0, 4, base.shape)  # ~27 KB at 384x216 q90, like 41 KB at 512x288 in library-facts §10
    return np.clip(base, 0, 255).astype(np.uint8)


def write_shards(out: Path, *, episodes: int, length: int, cameras: int, height: int, width: int, seg: int) -> None:
    rng = np.random.default_rng(0)
    cams = [f"cam{i}" for i in range(cameras)]
    with ShardSetWriter(out, max_segments=16, info={"segment_length": seg}) as w:
        for ep in range(episodes):
            frames = {(t, c): encode_jpeg(textured(rng, height, width, t + 7 * ci), 90) for t in range(length) for ci, c in enumerate(cams)}
            for start in range(0, length - seg + 1, seg):
                meta = SegmentMeta(f"ep{ep:04d}", start, list(range(start, start + seg)), [t / 10 for t in range(start, start + seg)],
                                   cams, [height, width], fps=10.0)  # fmt: skip
                w.write(meta, {(i, c): frames[(start + i, c)] for i in range(seg) for c in cams})


def decoded_in(batch: dict) -> int:
    """Distinct (segment, frame, camera) cells of a batch: what the loader decoded (once per group)."""
    mask, fi, keys = batch["mask"].tolist(), batch["frame_index"].tolist(), batch["keys"]
    return len({(keys[b], fi[b][t], v) for b, rows in enumerate(mask) for t, row in enumerate(rows) for v, ok in enumerate(row) if ok})


def time_pipeline(data: Path, plan: ViewPlan, args, warm: int, steps: int) -> tuple[float, float, int]:
    """(delivered frames/s, decoded frames/s, frames delivered) after ``warm`` batches."""
    loader = build_loader(data, plan, batch_size=args.batch, image_size=args.size, steps_per_epoch=warm + steps,
                          num_workers=args.workers, samples_per_segment=args.k, shuffle_buffer=args.buffer,
                          augment=AUGMENT[args.augment] if args.augment else False, seed=0)  # fmt: skip
    frames = decoded = 0
    start = None
    for i, batch in enumerate(loader):
        if i == warm:
            start = time.perf_counter()
        if i >= warm:
            frames += int(batch["mask"].sum())
            decoded += decoded_in(batch)
    elapsed = time.perf_counter() - start
    return frames / elapsed, decoded / elapsed, frames


def _decode_all(args: tuple[list[bytes], int | None]) -> int:
    blobs, size = args
    for b in blobs:
        decode_jpeg(b, size)
    return len(blobs)


def time_decode(blobs: list[bytes], size: int, workers: int, pool) -> float:
    if workers <= 0:
        start = time.perf_counter()
        _decode_all((blobs, size))
        return len(blobs) / (time.perf_counter() - start)
    parts = [(blobs[i::workers], size) for i in range(workers)]
    start = time.perf_counter()
    n = sum(pool.map(_decode_all, parts))
    return n / (time.perf_counter() - start)


def sample_blobs(data: Path, n: int) -> list[bytes]:
    """``n`` JPEGs from the shards (cycled), the kind the pipeline decodes."""
    pool = [b for _, _, imgs in iter_segments(resolve_shards(data)) for b in imgs.values()]
    return [pool[i % len(pool)] for i in range(n)]


def bench_plans(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shards"
        write_shards(data, episodes=args.episodes, length=args.length, cameras=args.cameras, height=args.height,
                     width=args.width, seg=args.segment)  # fmt: skip
        ctx = mp.get_context("fork")
        pool = ctx.Pool(args.workers) if args.workers > 0 else None
        cams = [f"cam{i}" for i in range(args.cameras)]
        kb = np.mean([len(b) for b in sample_blobs(data, 64)]) / 1024
        print(f"# {args.height}x{args.width} JPEG q90 ({kb:.0f} KiB) -> {args.size}px, {args.cameras} camera(s), segments of {args.segment}, "
              f"batch {args.batch}, k={args.k}, workers={args.workers}, augment={args.augment}, torch threads={torch.get_num_threads()}")  # fmt: skip
        print(f"{'plan':<6} {'delivered fr/s':>15} {'decoded fr/s':>13} {'decode-only fr/s':>17} {'ratio':>6} {'decoded ratio':>14}"
              f" {'ratio per run (min-max)':>24}")  # fmt: skip
        for name, req in PLANS.items():
            plan = ViewPlan.build({name: ViewRequest(cameras="all", deltas=req.deltas)}, cams)
            delivered, decoded, bound = [], [], []
            for _ in range(args.repeats):  # alternate the two measurements: machine load drifts
                fps, dec, frames = time_pipeline(data, plan, args, args.warmup, args.steps)
                delivered.append(fps)
                decoded.append(dec)
                bound.append(time_decode(sample_blobs(data, frames), args.size, args.workers, pool))
            p, d, b = (statistics.median(x) for x in (delivered, decoded, bound))
            each = [x / y for x, y in zip(delivered, bound)]  # each run against the bound measured right after it
            print(f"{name:<6} {p:>15,.0f} {d:>13,.0f} {b:>17,.0f} {p / b:>6.2f} {d / b:>14.2f} {min(each):>19.2f}-{max(each):.2f}")
        if pool:
            pool.close()


def bench_decoders(args) -> None:
    rng = np.random.default_rng(0)
    sizes = [(144, 256), (288, 512), (720, 1280)]
    print(f"{'stored':>10} {'target':>6} " + " ".join(f"{n:>12}" for n in DECODERS) + "   (frames/s, median)")
    for h, w in sizes:
        blobs = [encode_jpeg(textured(rng, h, w, t), 90) for t in range(16)]
        for target in (None, args.size):
            row = []
            for name, fn in DECODERS.items():
                runs = []
                for _ in range(args.repeats):
                    n = max(16, int(4e6 / (h * w)))
                    start = time.perf_counter()
                    for i in range(n):
                        fn(blobs[i % 16], target)
                    runs.append(n / (time.perf_counter() - start))
                row.append(statistics.median(runs))
            print(f"{h:>4}x{w:<5} {str(target or 'full'):>6} " + " ".join(f"{v:>12,.0f}" for v in row))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decoders", action="store_true", help="compare the JPEG decoders instead")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--height", type=int, default=216)
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--size", type=int, default=128, help="training image size")
    p.add_argument("--cameras", type=int, default=1)
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--segment", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--k", type=int, default=4, help="samples_per_segment")
    p.add_argument("--buffer", type=int, default=256, help="shuffle buffer (samples)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--augment", nargs="?", const="default", default=None, choices=sorted(AUGMENT),
                   help="augment: 'default' (per-frame's views) or 'geo' (the geometry-safe views of the default recipe)")
    args = p.parse_args()
    torch.set_num_threads(1)
    bench_decoders(args) if args.decoders else bench_plans(args)


if __name__ == "__main__":
    main()
