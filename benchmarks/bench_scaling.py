"""Benchmark 4: how a training step's cost grows with batch size, image size, cameras and clip length.

    python benchmarks/bench_scaling.py [--backbone resnet18] [--steps 5] [--warmup 2] [--device cpu]

One optimizer step = backbone on every valid frame, objective(s), backward, AdamW. Each row runs in
its own subprocess (peak RSS is its own) on an in-memory batch built by ``ssltk.testing.fake_batch``:
the cost of the model and loss, without data loading (see bench_pipeline.py for that). The ratio
column is the time per step against the first row of its group, next to the growth of the number of
frames the backbone sees, so super-linear costs stand out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

GROUPS = {
    "batch size (temporal-infonce, 96 px)": [
        {"batch": b, "size": 96, "objectives": {"temporal-infonce": {"dt": "1-4"}}, "cameras": 1} for b in (16, 32, 64)
    ],
    "image size (temporal-infonce, batch 32)": [
        {"batch": 32, "size": s, "objectives": {"temporal-infonce": {"dt": "1-4"}}, "cameras": 1} for s in (64, 96, 128)
    ],
    "cameras (multi-camera, batch 16, 96 px)": [
        {"batch": 16, "size": 96, "objectives": {"multi-camera": {}}, "cameras": v} for v in (2, 3, 4)
    ],
    "clip length (multi-positive, 2 cameras, batch 8, 96 px)": [
        {"batch": 8, "size": 96, "objectives": {"multi-positive": {"clip": t}}, "cameras": 2} for t in (2, 4, 8)
    ],
}
CAMS = ["front", "front_left", "front_right", "rear"]


def child(spec: dict, args) -> dict:
    import torch

    from ssltk.registry import Registry
    from ssltk.testing import fake_batch
    from ssltk.train.model import SSLModel
    from ssltk.views import ViewPlan

    reg = Registry()
    fam, name = reg.backbone(args.backbone)
    torch.manual_seed(0)
    bb = fam.obj.create(name, img_size=spec["size"])
    objs = {n: reg.objective(n).obj.from_options(bb.num_features, **o) for n, o in spec["objectives"].items()}
    plan = ViewPlan.build({n: o.views() for n, o in objs.items()}, CAMS[: spec["cameras"]])
    dc = bb.data_config
    model = SSLModel(bb, objs, {n: 1.0 for n in objs}, plan, dc["mean"], dc["std"]).to(args.device)
    batch = fake_batch(spec["batch"], plan, episodes=max(2, spec["batch"] // 4), image_size=(spec["size"], spec["size"]))
    batch["frames"] = torch.randint(0, 256, batch["frames"].shape, dtype=torch.uint8)
    from ssltk.batch import to_device

    batch = to_device(batch, args.device)
    frames = int(batch["mask"].sum())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    stamps = []
    for _ in range(args.warmup + args.steps):
        opt.zero_grad(set_to_none=True)
        loss, _ = model(batch)
        loss.backward()
        opt.step()
        float(loss)
        stamps.append(time.perf_counter())
    dt = (stamps[-1] - stamps[args.warmup - 1]) / args.steps
    return {"s_per_step": dt, "frames": frames, "samples_per_s": spec["batch"] / dt,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", default=None)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child), args)))
        return
    env = {**os.environ, "SSLTK_LOAD_PLUGINS": os.environ.get("SSLTK_LOAD_PLUGINS", "ssltk")}
    print(f"| work | frames/step | s/step | samples/s | peak RSS MB | time ratio | frames ratio |")
    print(f"|---|---|---|---|---|---|---|")
    for group, specs in GROUPS.items():
        first = None
        for spec in specs:
            cmd = [sys.executable, __file__, "--child", json.dumps(spec), "--backbone", args.backbone,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            first = first or r
            label = f"{group}: batch {spec['batch']}, {spec['size']} px, {spec['cameras']} cam, {list(spec['objectives'].items())[0]}"
            print(f"| {label} | {r['frames']} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | {r['peak_rss_mb']:.0f} | "
                  f"{r['s_per_step'] / first['s_per_step']:.2f} | {r['frames'] / first['frames']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
