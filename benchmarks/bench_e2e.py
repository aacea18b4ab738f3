"""Benchmark 1: `ssltk pretrain` throughput and peak memory against a bare PyTorch loop.

    python benchmarks/bench_e2e.py [--backbone resnet18] [--image-size 96] [--batch-size 64]
                                   [--steps 12] [--warmup 4] [--repeats 3] [--precision fp32|bf16|auto]
                                   [--num-workers N] [--device cpu|cuda]

* ``ssltk``: the real training path (:func:`ssltk.train.loop.pretrain`): streamed shards, decode,
  augmentation, view sampling, the model, the objective, AdamW, schedule, logging and the final
  checkpoint and bundle (the bundle write happens after the timed steps).
* ``bare`` (the bound): the same ``SSLModel`` (backbone, head, loss), the same optimizer and schedule,
  stepping on ONE batch that is already on the device — no data loading at all.

Each mode runs in its own subprocess (so peak RSS is its own), the modes taking turns ``--repeats``
times. Throughput is samples/s over the steps after ``--warmup``; the medians and ratios are printed.
Targets (issue 9): ssltk >= 0.95x the bare loop's samples/s, peak RSS <= 1.25x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SPEED, TARGET_MEM = 0.95, 1.25


def _cfg(args, out: str):
    from ssltk.data.cache import default_synthetic_shards
    from ssltk.train.config import load_config

    data = args.data or str(default_synthetic_shards("train", verbose=False))
    return load_config(None, {
        "data": data, "out": out, "steps": args.warmup + args.steps, "backbone": args.backbone,
        "image_size": args.image_size, "batch_size": args.batch_size, "precision": args.precision,
        "device": args.device, "num_workers": args.num_workers, "log_every": 1000,
        "checkpoint_every": 100000, "warmup_steps": 2,
    })


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ssltk(args) -> dict:
    from ssltk.train.loop import pretrain

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, str(Path(tmp) / "run"))
        pretrain(cfg, progress=lambda step, total, row: stamps.append(time.perf_counter()))
    timed = stamps[args.warmup - 1:]
    sps = args.batch_size * (len(timed) - 1) / (timed[-1] - timed[0])
    return {"samples_per_s": sps, "peak_rss_mb": _peak_rss_mb()}


def run_bare(args) -> dict:
    import torch

    from ssltk.batch import to_device
    from ssltk.registry import Registry
    from ssltk.train.loop import _loader, build_run, make_optimizer
    from ssltk.data.pipeline import probe_data
    from ssltk.train.runtime import make_runtime

    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, str(Path(tmp) / "run"))
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last)
    data = probe_data(cfg.data)
    model, plan = build_run(cfg, Registry(), rt, data)
    optimizer, scheduler = make_optimizer(model, cfg)
    cfg.num_workers = 0
    batch = to_device(next(iter(_loader(cfg, data, plan, rt, 0, 1))), rt.device)  # one batch, in memory
    model.train()
    stamps = []
    for step in range(args.warmup + args.steps):
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            loss, _ = model(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step_update(step + 1)
        float(loss.detach())  # the same one host sync per step the real loop does
        stamps.append(time.perf_counter())
    timed = stamps[args.warmup - 1:]
    sps = args.batch_size * (len(timed) - 1) / (timed[-1] - timed[0])
    return {"samples_per_s": sps, "peak_rss_mb": _peak_rss_mb()}


def _child(mode: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, *argv], capture_output=True, text=True,
                         env={**os.environ, "SSLTK_LOAD_PLUGINS": os.environ.get("SSLTK_LOAD_PLUGINS", "ssltk")})
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="auto")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--data", default=None)
    p.add_argument("--child", default=None)
    args, _ = p.parse_known_args()
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("SSLTK_BENCH_THREADS", torch.get_num_threads())))
        print(json.dumps((run_ssltk if args.child == "ssltk" else run_bare)(args)))
        return
    argv = [a for a in sys.argv[1:]]
    from ssltk.data.cache import default_synthetic_shards

    default_synthetic_shards("train")  # generate once, outside the timed runs
    results: dict[str, list[dict]] = {"bare": [], "ssltk": []}
    for r in range(args.repeats):
        for mode in ("bare", "ssltk"):
            res = _child(mode, argv)
            results[mode].append(res)
            print(f"run {r + 1}/{args.repeats} {mode:5s}: {res['samples_per_s']:7.1f} samples/s, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("samples_per_s", "peak_rss_mb")} for m, v in results.items()}
    speed = med["ssltk"]["samples_per_s"] / med["bare"]["samples_per_s"]
    mem = med["ssltk"]["peak_rss_mb"] / med["bare"]["peak_rss_mb"]
    print(f"\n{args.backbone} {args.image_size}px batch {args.batch_size} precision {args.precision} "
          f"workers {args.num_workers}, medians of {args.repeats}:")
    print(f"  bare loop : {med['bare']['samples_per_s']:.1f} samples/s, peak RSS {med['bare']['peak_rss_mb']:.0f} MB")
    print(f"  ssltk     : {med['ssltk']['samples_per_s']:.1f} samples/s, peak RSS {med['ssltk']['peak_rss_mb']:.0f} MB")
    print(f"  throughput ratio {speed:.3f} (target >= {TARGET_SPEED})  {'OK' if speed >= TARGET_SPEED else 'MISSED'}")
    print(f"  memory ratio     {mem:.3f} (target <= {TARGET_MEM})  {'OK' if mem <= TARGET_MEM else 'MISSED'}")


if __name__ == "__main__":
    main()
