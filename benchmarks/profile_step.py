"""Where a training step's time goes: data, copy to device, backbone, objectives, backward, optimizer.

    python benchmarks/profile_step.py [--backbone resnet18] [--image-size 96] [--batch-size 64]
                                      [--objective temporal-infonce] [--steps 6] [--num-workers 1]
                                      [--precision auto] [--device auto] [--top 12]

Builds the same run ``ssltk pretrain`` builds (config defaults, built-in synthetic episodes unless
``--data``), then times each phase of ``--steps`` steps after one warm-up step (median per phase,
synchronising the device between phases) and prints the share of each. Then profiles two steps with
``torch.profiler`` and prints the operators with the most self time. Use it before optimising.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--objective", default="temporal-infonce")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--precision", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default=None)
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()

    from ssltk.batch import to_device
    from ssltk.data.synth.cache import default_synthetic_shards
    from ssltk.data.stream.pipeline import probe_data
    from ssltk.registry import Registry
    from ssltk.train.config import ObjectiveSpec, load_config
    from ssltk.train.build import build_run, make_loader, make_optimizer
    from ssltk.train.runtime import make_runtime, set_cpu_threads

    data_spec = args.data or str(default_synthetic_shards("train", verbose=False))
    cfg = load_config(None, {
        "data": data_spec, "backbone": args.backbone, "image_size": args.image_size, "batch_size": args.batch_size,
        "steps": args.steps + 3, "precision": args.precision, "device": args.device, "num_workers": args.num_workers,
    })  # fmt: skip
    cfg.objectives = [ObjectiveSpec(args.objective, 1.0, {})]
    rt = make_runtime(cfg.device, cfg.precision, cfg.channels_last)
    threads = set_cpu_threads(cfg.threads) if rt.device.type == "cpu" else torch.get_num_threads()
    data = probe_data(cfg.data)
    model, plan = build_run(cfg, Registry(), rt, data)
    optimizer, _ = make_optimizer(model, cfg)
    batches = iter(make_loader(cfg, data, plan, rt, 0, cfg.steps))
    model.train()

    def sync() -> None:
        if rt.device.type == "cuda":
            torch.cuda.synchronize()

    phases: dict[str, list[float]] = {k: [] for k in ("data", "to device", "backbone", "objectives", "backward", "optimizer")}

    def step(record: bool) -> None:
        marks = [time.perf_counter()]

        def mark() -> None:
            sync()
            marks.append(time.perf_counter())

        raw = next(batches)
        mark()
        batch = to_device(raw, rt.device)
        mark()
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            emb = model.embed(batch)
            mark()
            from ssltk.batch import select, select_embeddings

            loss = emb.new_zeros((), dtype=torch.float32)
            for name, objective in model.objectives.items():
                sel = model.plan.selections[name]
                out = objective(select_embeddings(emb, sel.slots, sel.cameras).float(), select(batch, sel.slots, sel.cameras))
                loss = loss + model.weights[name] * out.loss.float()
            float(loss.detach())  # the loop's one host sync per step
        mark()
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        mark()
        if record:
            for name, a, b in zip(phases, marks, marks[1:]):
                phases[name].append(b - a)

    step(record=False)  # warm-up
    for _ in range(args.steps):
        step(record=True)
    med = {k: statistics.median(v) for k, v in phases.items()}
    total = sum(med.values())
    print(f"# {args.backbone} {args.image_size}px batch {args.batch_size} {args.objective} on {rt.device} "
          f"({rt.precision}{', channels_last' if rt.channels_last else ''}, {threads} compute threads, "
          f"{cfg.num_workers} loader workers); median of {args.steps} steps")
    print(f"{'phase':<12} {'ms':>9} {'share':>7}")
    for k, v in med.items():
        print(f"{k:<12} {v * 1e3:>9.1f} {v / total:>7.1%}")
    print(f"{'step':<12} {total * 1e3:>9.1f}   ({args.batch_size / total:.1f} samples/s)")

    activities = [torch.profiler.ProfilerActivity.CPU]
    if rt.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(2):
            step(record=False)
    sort = "self_cuda_time_total" if rt.device.type == "cuda" else "self_cpu_time_total"
    print(f"\n# operators with the most self time over 2 steps ({sort})")
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top, max_name_column_width=40))


if __name__ == "__main__":
    main()
