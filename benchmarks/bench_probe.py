"""``run_probe`` wall time against a forward-pass-only bound measured in the same run.

    python benchmarks/bench_probe.py                       # default synthetic probe split, resnet18 at 96 px
    python benchmarks/bench_probe.py --arch resnet18 --size 128 --data shards/probe --repeats 3

It writes a randomly initialised bundle of ``--arch`` into a temp folder, then

* probe: the whole ``run_probe`` (read and decode shards, encode every frame with
  the bundle and one random init per seed, raw pixels, ridge fits, retrieval,
  ``probe.json`` and ``probe.png``);
* bound: the same number of forward passes (frames per model × models) of the
  same architecture on random tensors already in memory, batch 64, in eval mode
  under ``torch.inference_mode``: the part no implementation can skip;

and prints the median of ``--repeats`` runs of each and their ratio (target:
probe <= 1.5x the bound) next to the demo target (probe under 60 s on 2 CPU
cores). Numbers vary with machine load; compare within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TARGET_RATIO = 1.5
TARGET_SECONDS = 60.0


def make_bundle(out: Path, arch: str, size: int) -> Path:
    from ssltk.bundle import write_bundle
    from ssltk_builtins.timm_backbones import TimmFamily

    torch.manual_seed(0)
    return write_bundle(out, backbone=TimmFamily().create(arch, img_size=size), heads={}, manifest={"seed": 0})


def time_probe(bundle: Path, data, seeds, out: Path) -> tuple[float, int]:
    from ssltk.probe import run_probe

    t0 = time.perf_counter()
    result = run_probe(bundle, data, seeds=seeds, device="cpu", out=out)
    return time.perf_counter() - t0, result["timing_s"]["frames_encoded_per_model"]


def time_bound(arch: str, size: int, n_forward: int) -> float:
    import timm

    model = timm.create_model(arch, num_classes=0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(64, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x[:8])  # warm-up
        t0 = time.perf_counter()
        for lo in range(0, n_forward, 64):
            model(x[: min(64, n_forward - lo)])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--data", default=None, help="probe shards (default: the built-in synthetic probe split)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.arch} at {args.size} px, seeds {seeds}")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(Path(tmp) / "bundle", args.arch, args.size)
        time_probe(bundle, args.data, seeds[:1], Path(tmp) / "warm")  # imports, data generation/cache
        probe, bound = [], []
        for r in range(args.repeats):  # taking turns, so load changes hit both
            seconds, frames = time_probe(bundle, args.data, seeds, Path(tmp) / f"out{r}")
            probe.append(seconds)
            bound.append(time_bound(args.arch, args.size, frames * (1 + len(seeds))))
    p, b = statistics.median(probe), statistics.median(bound)
    print(f"frames per model: {frames}; models with a forward pass: {1 + len(seeds)}")
    print(f"probe  {p:7.2f} s   (runs: {', '.join(f'{v:.2f}' for v in probe)})")
    print(f"bound  {b:7.2f} s   (forward passes only)")
    print(f"ratio  {p / b:7.2f}x  (target <= {TARGET_RATIO}x)   probe under {TARGET_SECONDS:.0f} s: {'yes' if p < TARGET_SECONDS else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
