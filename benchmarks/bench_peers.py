"""ssltk against its peers in one run: a LightlySSL-assembled loop and a bare PyTorch loop.

    pip install -e ".[bench]"            # LightlySSL, for this benchmark only
    python benchmarks/bench_peers.py [--batch-size 32] [--steps 6] [--warmup 2] [--repeats 3]

Every side trains the same thing: a timm ``resnet18`` backbone, a 512-512-128 projection head, a
temporal NT-Xent loss (temperature 0.1, positive = the same camera 2-10 frames later), AdamW
(lr 2e-3, wd 0.05), grad-clip 1.0, on the same tiny shards (``default_synthetic_shards("train")``,
96 px frames, so no resize), at 96 px, with the same batch (pairs), steps and one loader worker.

* ``ssltk``: :func:`ssltk.train.loop.pretrain` with ``--objective temporal-infonce`` (the real path:
  streamed shards, decode, view sampling, logging, checkpoint and bundle after the timed steps).
* ``lightly``: what a user assembles from LightlySSL: ``lightly.models.modules.SimCLRProjectionHead``
  + ``lightly.loss.NTXentLoss`` + a ``webdataset`` reader (resampled shards, a pairing stage that
  draws (t, t+Δt) of one camera from each segment, ``torchvision.io.decode_jpeg``, batched in the
  worker, a torch ``DataLoader``).
* ``bare``: the bound: ssltk's own model and optimizer stepping on ONE batch already in memory
  (no data loading), as in ``benchmarks/bench_e2e.py``.

Each side runs at fp32 and at its best precision on this machine (``auto``: bf16 with autocast and
channels_last where the CPU has AVX512-BF16/AMX, else fp32, in which case the fp32 runs are the
only ones). Every (side, precision) runs in its own subprocess, so its peak RSS
(``resource.getrusage``) is its own; the modes take turns ``--repeats`` times (interleaved rounds)
and the medians are compared. Goals (issue 19): ssltk >= 1.0x LightlySSL at equal precision,
>= 2x it at ``auto`` on CPUs with fast bf16, >= 0.95x the bare loop at the same precision, peak
RSS <= 1.25x.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _bare import bare_loop, peak_rss_mb, run_child, samples_per_s  # benchmarks/_bare.py

GOAL_LIGHTLY, GOAL_LIGHTLY_BF16, GOAL_BARE, GOAL_MEM = 1.0, 2.0, 0.95, 1.25
DT = (2, 10)
LR, WD, CLIP, TEMPERATURE = 2e-3, 0.05, 1.0, 0.1


def _sps(stamps: list[float], args) -> float:
    return samples_per_s(stamps, args.warmup, args.batch_size)


def _cfg(args, out: str, precision: str):
    from ssltk.train.config import load_config

    return load_config(None, {
        "data": args.data, "out": out, "steps": args.warmup + args.steps, "backbone": "resnet18",
        "image_size": args.image_size, "batch_size": args.batch_size, "precision": precision, "device": "cpu",
        "num_workers": 1, "log_every": 1000, "checkpoint_every": 100000, "warmup_steps": 2, "lr": LR,
        "weight_decay": WD, "grad_clip": CLIP, "objectives": {"temporal-infonce": {"dt": f"{DT[0]}-{DT[1]}"}},
    })  # fmt: skip


def run_ssltk(args, precision: str) -> dict:
    from ssltk.train.loop import pretrain

    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        pretrain(_cfg(args, str(Path(tmp) / "run"), precision), progress=lambda *_: stamps.append(time.perf_counter()))
    return {"samples_per_s": _sps(stamps, args), "peak_rss_mb": peak_rss_mb()}


def run_bare(args, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _cfg(args, str(Path(tmp) / "run"), precision)
    return {"samples_per_s": _sps(bare_loop(cfg, args.warmup + args.steps), args), "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ the LightlySSL-assembled loop
class _Pairs:
    """webdataset stage: each segment sample -> ``k`` (frame t, frame t+Δt) JPEG pairs of one camera."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seed = k, seed

    def __call__(self, src):
        rng = random.Random(self.seed)
        for sample in src:
            meta = json.loads(sample["json"])
            n, cam = len(meta["frames"]), meta["cameras"][0]
            for _ in range(self.k):
                dt = rng.randint(DT[0], min(DT[1], n - 1))
                t = rng.randrange(n - dt)
                yield sample[f"f{t:03d}.{cam}.jpg"], sample[f"f{t + dt:03d}.{cam}.jpg"]


def _decode_pair(pair):
    import torch
    from torchvision.io import decode_jpeg

    return tuple(decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)) for b in pair)


def _collate(items):
    import torch

    return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


def run_lightly(args, precision: str) -> dict:
    import timm
    import torch
    import webdataset as wds
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from ssltk.data.shards.format import resolve_shards

    bf16 = precision == "bf16"
    torch.manual_seed(0)
    urls = resolve_shards(args.data)
    pipe = wds.DataPipeline(
        wds.ResampledShards(urls, seed=0, deterministic=True), wds.tarfile_to_samples(), _Pairs(4, 0),
        wds.shuffle(256, initial=32), wds.map(_decode_pair), wds.batched(args.batch_size, collation_fn=_collate),
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=1, persistent_workers=True)
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
    model = torch.nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128))
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    criterion = NTXentLoss(temperature=TEMPERATURE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    model.train()
    stamps = []
    batches = iter(loader)
    for _ in range(args.warmup + args.steps):
        a, b = next(batches)
        x = torch.cat([a, b]).float().sub_(mean).div_(std)
        if bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = model(x)
            loss = criterion(*z.float().chunk(2))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        float(loss.detach())
        stamps.append(time.perf_counter())
    return {"samples_per_s": _sps(stamps, args), "peak_rss_mb": peak_rss_mb()}


# ------------------------------------------------------------------ driver
RUNNERS = {"ssltk": run_ssltk, "lightly": run_lightly, "bare": run_bare}


def cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx")))
    except OSError:
        pass
    return "?"


def _ratio_line(what: str, med: dict, a: str, b: str, goal: float) -> str:
    speed = med[a]["samples_per_s"] / med[b]["samples_per_s"]
    mem = med[a]["peak_rss_mb"] / med[b]["peak_rss_mb"]
    ok = "OK" if speed >= goal and mem <= GOAL_MEM else "MISSED"
    return f"  {what:<34} {a} / {b}: speed {speed:.2f}x (goal >= {goal}), peak RSS {mem:.2f}x (goal <= {GOAL_MEM})  {ok}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--steps", type=int, default=6, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--data", default=None, help="shards (default: the built-in synthetic train shards)")
    p.add_argument("--child", default=None)
    args, _ = p.parse_known_args()
    if args.child:
        side, precision = args.child.split("-")
        print(json.dumps(RUNNERS[side](args, precision)))
        return
    from ssltk.data.synth.cache import default_synthetic_shards
    from ssltk.train.runtime import resolve_precision

    import torch

    data = args.data or str(default_synthetic_shards("train", verbose=False))  # generated once, outside the runs
    argv = [a for a in sys.argv[1:] if a != "--data" and a != args.data] + ["--data", data]
    best = "bf16" if resolve_precision("auto", torch.device("cpu")) is not None else "fp32"
    precisions = ["fp32"] + (["bf16"] if best == "bf16" else [])
    modes = [f"{side}-{prec}" for prec in precisions for side in ("ssltk", "lightly", "bare")]
    print(f"# resnet18 {args.image_size}px, batch {args.batch_size} pairs, {args.warmup}+{args.steps} steps, "
          f"{args.repeats} rounds; torch threads {torch.get_num_threads()}; auto = {best} here")  # fmt: skip
    print(f"# CPU flags: {cpu_flags()}")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for mode in modes if r % 2 == 0 else modes[::-1]:  # interleaved, alternating order
            res = run_child(__file__, mode, argv)
            results[mode].append(res)
            print(f"round {r + 1}/{args.repeats} {mode:13s}: {res['samples_per_s']:6.1f} pairs/s, "
                  f"peak RSS {res['peak_rss_mb']:5.0f} MB", flush=True)  # fmt: skip
    med = {m: {k: statistics.median(x[k] for x in v) for k in ("samples_per_s", "peak_rss_mb")} for m, v in results.items()}
    print(f"\nmedians of {args.repeats}:")
    for m in modes:
        print(f"  {m:13s}: {med[m]['samples_per_s']:6.1f} pairs/s, peak RSS {med[m]['peak_rss_mb']:5.0f} MB")
    print("ratios:")
    for prec in precisions:
        print(_ratio_line(f"vs LightlySSL, both {prec}", med, f"ssltk-{prec}", f"lightly-{prec}", GOAL_LIGHTLY))
        print(_ratio_line(f"vs the bare loop, both {prec}", med, f"ssltk-{prec}", f"bare-{prec}", GOAL_BARE))
    if best == "bf16":
        print(_ratio_line("ssltk auto (bf16) vs LightlySSL fp32", med, "ssltk-bf16", "lightly-fp32", GOAL_LIGHTLY_BF16))


if __name__ == "__main__":
    main()
