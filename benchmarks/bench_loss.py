"""Benchmark: multi-positive masked InfoNCE vs one F.cross_entropy over the same similarity matrix.

    python benchmarks/bench_loss.py [--n 4096] [--dim 128] [--repeats 7] [--device cpu|cuda]

Every variant does forward + backward on ``N`` embeddings of size ``D``
(l2-normalise, ``N x N`` similarities / tau, loss, gradients):

* ``cross_entropy`` (the bound): ``F.cross_entropy(logits, targets)``, one target per row;
* ``kernel``: :func:`ssltk.losses.masked_infonce` with a precomputed multi-positive mask, no statistics;
* ``kernel+stats``: the same with the health statistics;
* ``objective``: the ``multi-positive`` objective end to end (``proj_dim=0``): masks built
  from episode/frame ids, kernel, statistics.

Time: median of ``--repeats`` runs after a warm-up, the variants taking turns. Peak memory: on CUDA
``torch.cuda.max_memory_allocated`` above what was allocated before the run;
on CPU each variant runs in its own subprocess (glibc told to return large
blocks to the system at once) and the peak resident set size (``VmHWM``,
reset through ``/proc/self/clear_refs``) above the resident size before the
run. Ratios are against ``cross_entropy``; the target is <= 1.5x for each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

TAU = 0.1
VARIANTS = ("cross_entropy", "kernel", "kernel+stats", "objective")
TARGET = 1.5


def make_inputs(n: int, dim: int, device: str):
    """Embeddings shaped as a multi-positive batch: B samples x clip 4 x 2 cameras = n rows."""
    clip, cams = 4, 2
    B = n // (clip * cams)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(B, clip, cams, dim, generator=g).to(device)
    episode = (torch.arange(B) // 4)[:, None].expand(B, clip).contiguous()  # 4 samples per episode
    frame = (torch.arange(B) % 4 * 16)[:, None] + 2 * torch.arange(clip)[None, :]
    mask = torch.ones(B, clip, cams, dtype=torch.bool)
    ts = frame.double() / 10
    batch = {
        "frames": torch.zeros(B, clip, cams, 3, 1, 1, dtype=torch.uint8), "mask": mask, "episode": episode,
        "frame_index": frame, "timestamp": ts, "dt": (ts - ts[:, :1]).float(),
        "slots": ["t", "t+2f", "t+4f", "t+6f"], "cameras": ["front", "left"], "ego": {},
    }
    batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    return emb, batch


def make_step(variant: str, n: int, dim: int, device: str):
    """A closure running one forward + backward of ``variant``."""
    from ssltk.contrastive import Rows
    from ssltk.losses import masked_infonce
    from ssltk_builtins.multi_positive import MultiPositive

    emb, batch = make_inputs(n, dim, device)
    obj = MultiPositive.from_options(dim, proj_dim=0, clip=4, stride=2, window=2, temperature=TAU).to(device)
    rows = Rows.from_batch(batch, emb.device)
    pos = obj.masks(rows, rows).positives
    flat = emb.reshape(-1, dim)
    targets = torch.randint(0, n, (n,), device=device)

    def step():
        x = flat.detach().requires_grad_(True)
        if variant == "cross_entropy":
            z = F.normalize(x, dim=-1)
            loss = F.cross_entropy((z / TAU) @ z.T, targets)
        elif variant in ("kernel", "kernel+stats"):
            loss = masked_infonce(x, pos, temperature=TAU, stats=variant == "kernel+stats").loss
        else:
            loss = obj(x.view(emb.shape), batch).loss
        loss.backward()
        return x.grad

    return step


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_variants(n: int, dim: int, device: str, repeats: int) -> dict[str, float]:
    """Median seconds per step; the variants take turns so that machine load hits all alike."""
    steps = {v: make_step(v, n, dim, device) for v in VARIANTS}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for step in steps.values():
        step()  # warm-up
    for _ in range(repeats):
        for v, step in steps.items():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times[v].append(time.perf_counter() - t0)
    return {v: statistics.median(t) for v, t in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_bytes_here(variant: str, n: int, dim: int, device: str) -> int:
    """Peak extra memory of one step, measured in this process."""
    step = make_step(variant, n, dim, device)
    step()  # warm-up: lazy initialisation is not part of the step
    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (peak RSS) to the current RSS
    step()
    return (_status_kb("VmHWM") - before) * 1024


def peak_bytes(variant: str, n: int, dim: int, device: str) -> int:
    if device == "cuda":
        return peak_bytes_here(variant, n, dim, device)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", variant, "--n", str(n), "--dim", str(dim), "--device", device]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak"])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(1) if args.device == "cpu" else None
    if args.child:
        print(json.dumps({"peak": peak_bytes_here(args.child, args.n, args.dim, args.device)}))
        return {}
    times = time_variants(args.n, args.dim, args.device, args.repeats)
    rows = {v: {"time_s": times[v], "peak_bytes": peak_bytes(v, args.n, args.dim, args.device)} for v in VARIANTS}
    base = rows["cross_entropy"]
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} thread(s)"
    print(f"N={args.n} D={args.dim} device={name} torch={torch.__version__} median of {args.repeats}")
    print(f"{'variant':<14} {'fwd+bwd ms':>11} {'x time':>7} {'peak MiB':>9} {'x memory':>9}")
    for v, r in rows.items():
        r["time_ratio"] = r["time_s"] / base["time_s"]
        r["memory_ratio"] = r["peak_bytes"] / base["peak_bytes"]
        ok = "" if v == "cross_entropy" else ("  ok" if max(r["time_ratio"], r["memory_ratio"]) <= TARGET else "  OVER 1.5x")
        print(f"{v:<14} {r['time_s'] * 1e3:>11.1f} {r['time_ratio']:>7.2f} {r['peak_bytes'] / 2**20:>9.1f} {r['memory_ratio']:>9.2f}{ok}")
    return rows


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins"))
    main()
