"""Benchmark 1: `ssltk pretrain` throughput and peak memory against a bare PyTorch loop.

    python benchmarks/bench_e2e.py [--backbone resnet18] [--image-size 96] [--batch-size 64]
                                   [--steps 12] [--warmup 4] [--repeats 3] [--precision auto|fp32|bf16]
                                   [--num-workers N] [--device cpu|cuda]

* ``ssltk``: the real training path (:func:`ssltk.train.loop.pretrain`): streamed shards, decode,
  augmentation, view sampling, the model, the objective, AdamW, schedule, logging and the final
  checkpoint and bundle (the bundle write happens after the timed steps).
* ``bare`` (the bound): the same ``SSLModel`` (backbone, head, loss), the same optimizer and schedule,
  stepping on ONE batch that is already on the device — no data loading at all. It runs in fp32 (a hand-written
  loop without mixed precision; on CUDA with TF32 and ``cudnn.benchmark`` on, as ssltk sets them, so
  that bound is the stricter one) and, when ssltk's ``--precision`` (default ``auto``)
  resolves to bf16 on this machine, also in bf16 + channels_last: the first ratio shows "faster than a
  hand-written loop", the second "no overhead at the same precision".

Each mode runs in its own subprocess (so peak RSS is its own), the modes taking turns ``--repeats``
times. Throughput is samples/s over the steps after ``--warmup``; the medians and ratios are printed.
Targets (issue 9): ssltk >= 0.95x the bare loop's samples/s, peak RSS <= 1.25x.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _bare import bare_loop, peak_rss_mb, run_child, samples_per_s  # benchmarks/_bare.py

TARGET_SPEED, TARGET_MEM = 0.95, 1.25


def _cfg(args, out: str, precision: str | None = None):
    from ssltk.data.synth.cache import default_synthetic_shards
    from ssltk.train.config import load_config

    data = args.data or str(default_synthetic_shards("train", verbose=False))
    return load_config(None, {
        "data": data, "out": out, "steps": args.warmup + args.steps, "backbone": args.backbone,
        "image_size": args.image_size, "batch_size": args.batch_size, "precision": precision or args.precision,
        "device": args.device, "num_workers": args.num_workers, "log_every": 1000,
        "checkpoint_every": 100000, "warmup_steps": 2,
    })


def run_ssltk(args) -> dict:
    from ssltk.train.loop import pretrain

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, str(Path(tmp) / "run"))
        pretrain(cfg, progress=lambda step, total, row: stamps.append(time.perf_counter()))
    return {"samples_per_s": samples_per_s(stamps, args.warmup, args.batch_size), "peak_rss_mb": peak_rss_mb()}


def run_bare(args, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, str(Path(tmp) / "run"), precision)
    stamps = bare_loop(cfg, args.warmup + args.steps)
    return {"samples_per_s": samples_per_s(stamps, args.warmup, args.batch_size), "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="auto", help="ssltk's setting (auto: bf16 where it is fast)")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--child", default=None)
    args, _ = p.parse_known_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("SSLTK_BENCH_THREADS", torch.get_num_threads())))
        print(json.dumps(run_ssltk(args) if args.child == "ssltk" else run_bare(args, args.child.split("-")[1])))
        return
    argv = [a for a in sys.argv[1:]]
    from ssltk.data.synth.cache import default_synthetic_shards
    from ssltk.train.runtime import resolve_device, resolve_precision

    default_synthetic_shards("train")  # generate once, outside the timed runs
    resolved = "bf16" if resolve_precision(args.precision, resolve_device(args.device)) is not None else "fp32"
    modes = ["bare-fp32", "ssltk"] + (["bare-bf16"] if resolved == "bf16" else [])
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in modes:
            res = run_child(__file__, mode, argv)
            results[mode].append(res)
            print(f"run {r + 1}/{args.repeats} {mode:9s}: {res['samples_per_s']:7.1f} samples/s, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("samples_per_s", "peak_rss_mb")} for m, v in results.items()}
    print(f"\n{args.backbone} {args.image_size}px batch {args.batch_size}, ssltk --precision {args.precision} "
          f"(= {resolved} here), workers {args.num_workers}, medians of {args.repeats}:")
    for m in modes:
        print(f"  {m:9s}: {med[m]['samples_per_s']:.1f} samples/s, peak RSS {med[m]['peak_rss_mb']:.0f} MB")
    if resolved == "fp32":  # one bound is both "a hand-written loop" and "the same precision"
        bounds = {"bare-fp32": "vs the bare fp32 loop (a hand-written loop, and the same precision here)"}
    else:
        bounds = {"bare-fp32": "vs a hand-written fp32 loop", "bare-bf16": "vs the bare loop in bf16 too: toolkit overhead"}
    for bound, what in bounds.items():
        speed = med["ssltk"]["samples_per_s"] / med[bound]["samples_per_s"]
        mem = med["ssltk"]["peak_rss_mb"] / med[bound]["peak_rss_mb"]
        print(f"  {what}")
        print(f"    throughput ratio {speed:.3f} (target >= {TARGET_SPEED})  {'OK' if speed >= TARGET_SPEED else 'MISSED'}")
        print(f"    memory ratio     {mem:.3f} (target <= {TARGET_MEM})  {'OK' if mem <= TARGET_MEM else 'MISSED'}")


if __name__ == "__main__":
    main()
