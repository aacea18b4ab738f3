"""Does bf16 cost representation quality? (issue 9) The demo recipe trained in fp32 and in bf16, probed together.

    python benchmarks/precision_experiment.py [--seeds 0] [--steps 100] [--precisions fp32,bf16] [--threads 2] [--out runs/precision]

For each seed, trains the demo recipe (ssltk/configs/demo.yaml: temporal-infonce, resnet18, 64 px,
batch 32, 100 steps, same data order) once per precision, then probes the bundles of that seed
together (``run_probe`` with ``--compare``: same probe split, same ridge folds, plus random init and
raw pixels). Prints a markdown table with each precision's value and bf16 - fp32, and writes
``benchmarks/results/precision-<steps>steps.json``.

bf16 here means what ``--precision bf16`` does: autocast to bfloat16 plus channels_last. On CPUs
without AMX/AVX512-BF16 oneDNN emulates bf16, which is ~10-25x slower than fp32 but computes the same
bf16-rounded numbers, so the quality comparison holds even where the speed does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from recipe_experiment import KEY_ROWS, collect


def train(precision: str, seed: int, steps: int | None, threads: int, root: Path) -> Path:
    from ssltk.cli.demo import demo_config_path
    from ssltk.train.config import load_config
    from ssltk.train.loop import pretrain

    out = root / f"{precision}-s{seed}-{steps or 'demo'}steps"
    if (out / "ssltk.json").exists():
        return out  # resumable experiment: keep finished runs
    # num_workers 0: the data cost is negligible next to an emulated-bf16 step and both runs see the same stream
    overrides = {"out": str(out), "seed": seed, "steps": steps, "precision": precision, "threads": threads, "num_workers": 0}
    cfg = load_config(demo_config_path(), overrides)
    t0 = time.perf_counter()
    pretrain(cfg, overwrite=True)
    print(f"trained {precision} seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def markdown(table: dict, precisions: list[str], seeds: list[int]) -> str:
    keys = [k for k in next(iter(table.values())) if k.split(" | ")[0].startswith(KEY_ROWS)]
    cols = precisions + ["random init", "raw pixels"]
    head = "| probe | metric | " + " | ".join(cols) + " | bf16 − fp32 |"
    lines = [head, "|---|---|" + "---|" * (len(cols) + 1)]
    for k in keys:
        probe_name, metric = k.split(" | ")
        cells = [f"{statistics.mean(table[c][k]):.3f}" if table.get(c, {}).get(k) else "–" for c in cols]
        diff = "–"
        if table.get("fp32", {}).get(k) and table.get("bf16", {}).get(k):
            diff = f"{statistics.mean(a - b for a, b in zip(table['bf16'][k], table['fp32'][k])):+.3f}"
        lines.append(f"| {probe_name} | {metric} | " + " | ".join(cells) + f" | {diff} |")
    return "\n".join(lines) + f"\n\nmean over seeds {seeds}; each seed's runs share the data order and the probe split"


def main() -> None:
    from ssltk.probe import run_probe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0")
    p.add_argument("--steps", type=int, default=None, help="default: the demo's 100")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--threads", type=int, default=2, help="CPU compute threads per run")
    p.add_argument("--out", default="runs/precision")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    precisions = args.precisions.split(",")
    root = Path(args.out)
    results, names = {}, {}
    steps = args.steps or 100
    result_file = Path(f"benchmarks/results/precision-{steps}steps.json")
    result_file.parent.mkdir(parents=True, exist_ok=True)
    for seed in seeds:  # results are written after every seed: a long run can be read while it goes on
        bundles = [train(prec, seed, args.steps, args.threads, root) for prec in precisions]
        results[seed] = run_probe(bundles[0], None, compare=[str(b) for b in bundles[1:]], seeds=(seed,), out=None)
        names[seed] = precisions
        table = collect(results, names)
        result_file.write_text(json.dumps({"seeds": list(results), "steps": steps, "table": table}, indent=1))
        print(f"\n{steps} steps, seeds so far {list(results)}:\n" + markdown(table, precisions, list(results)), flush=True)


if __name__ == "__main__":
    main()
