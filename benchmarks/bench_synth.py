"""Rendering speed of the synthetic episode generator, per core (``ssltk data synth``).

Renders episodes (world sampling, four cameras, JPEG encoding: everything
``synth_episodes`` does except writing the tar) in one process and prints
camera frames per second, the median of several runs, and its ratio to the
target of 200 frames/s per core at 128x128. For scale it also measures, in
the same run, JPEG encoding alone (an upper bound no renderer can beat).

    python benchmarks/bench_synth.py                 # 128x128 and 96x96
    python benchmarks/bench_synth.py --sizes 128 --runs 7
    python benchmarks/bench_synth.py --default-set   # also time the cached default train set

Frames/s uses CPU time of this process (robust on a shared machine); wall
time is printed next to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core

import numpy as np  # noqa: E402
import simplejpeg  # noqa: E402

from ssltk.data.synth.episodes import render_episode, synth_params  # noqa: E402

TARGET = 200.0  # camera frames per second per core at 128x128


def _time(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def bench_render(size: int, episodes: int, length: int, runs: int) -> dict:
    params = synth_params(episodes=episodes, length=length, image_size=size)
    frames = episodes * length * len(params["cameras"])
    render_episode(synth_params(episodes=1, length=2, image_size=size), 0)  # warm up (renderer tables)
    cpu, wall = [], []
    for r in range(runs):
        c, w = _time(lambda: [render_episode({**params, "seed": r}, i) for i in range(episodes)])
        cpu.append(frames / c)
        wall.append(frames / w)
    return {"size": size, "frames": frames, "cpu_fps": statistics.median(cpu), "wall_fps": statistics.median(wall)}


def bench_jpeg_only(size: int, n: int = 400, runs: int = 5) -> float:
    rng = np.random.default_rng(0)
    img = (rng.random((size, size, 3)) * 60 + np.linspace(0, 190, size)[:, None, None]).astype(np.uint8)
    rates = []
    for _ in range(runs):
        c, _ = _time(lambda: [simplejpeg.encode_jpeg(img, quality=90, colorsubsampling="420") for _ in range(n)])
        rates.append(n / c)
    return statistics.median(rates)


def bench_default_set() -> tuple[float, float]:
    from ssltk.data.synth import cache

    tmp = tempfile.mkdtemp(prefix="ssltk-bench-cache-")
    os.environ["SSLTK_CACHE"] = tmp
    try:
        return _time(lambda: cache.default_synthetic_shards("train", verbose=False))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 96])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--length", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--default-set", action="store_true", help="also time generating the default train set")
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, {args.runs} runs, median")
    for size in args.sizes:
        r = bench_render(size, args.episodes, args.length, args.runs)
        jpeg = bench_jpeg_only(size)
        print(
            f"{size}x{size}: {r['cpu_fps']:7.1f} frames/s per core (CPU time; wall {r['wall_fps']:.1f})"
            f"  ratio to target {TARGET:.0f}: {r['cpu_fps'] / TARGET:.2f}"
            f"  | JPEG encoding alone {jpeg:.0f} frames/s (renderer at {r['cpu_fps'] / jpeg:.1%} of it)"
        )
    if args.default_set:
        cpu, wall = bench_default_set()
        print(f"default train set (24 episodes x 64 timesteps x 4 cameras, 96 px): {cpu:.1f} s CPU, {wall:.1f} s wall")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
