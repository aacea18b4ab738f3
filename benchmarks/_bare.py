"""What bench_e2e.py and bench_peers.py share: the bare loop ssltk is measured against, and how
each mode runs in its own process.

The bare loop is ssltk's own model (backbone, head, loss), optimizer and schedule stepping on one
batch already in memory: no data loading, no logging, no checkpoints — the bound on what the
training loop can add. Built through ssltk's public build functions (``ssltk.train.build``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def samples_per_s(stamps: list[float], warmup: int, batch_size: int) -> float:
    """Samples/s over the steps after ``warmup`` (``stamps``: one time per finished step)."""
    timed = stamps[warmup - 1 :]
    return batch_size * (len(timed) - 1) / (timed[-1] - timed[0])


def bare_loop(cfg, steps: int) -> list[float]:
    """Step ssltk's model ``steps`` times on one in-memory batch built from ``cfg``; one time stamp per step."""
    import torch

    from ssltk.batch import to_device
    from ssltk.data.stream.pipeline import probe_data
    from ssltk.registry import Registry
    from ssltk.train.build import build_run, make_loader, make_optimizer
    from ssltk.train.runtime import make_runtime

    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last)
    data = probe_data(cfg.data)
    model, plan = build_run(cfg, Registry(), rt, data)
    optimizer, scheduler = make_optimizer(model, cfg)
    cfg.num_workers = 0
    batch = to_device(next(iter(make_loader(cfg, data, plan, rt, 0, 1))), rt.device)  # one batch, in memory
    model.train()
    stamps = []
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            loss, _ = model(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step_update(step + 1)
        float(loss.detach())  # the same one host sync per step the real loop does
        stamps.append(time.perf_counter())
    return stamps


def run_child(script: str, mode: str, argv: list[str]) -> dict:
    """Run ``script --child MODE ARGV`` in a fresh process (its own peak RSS); its last stdout line as JSON."""
    env = {**os.environ, "SSLTK_LOAD_PLUGINS": os.environ.get("SSLTK_LOAD_PLUGINS", "ssltk")}
    out = subprocess.run([sys.executable, script, "--child", mode, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
