"""The recipe experiment (issue 8): which objectives make the demo's default recipe?

    python benchmarks/recipe_experiment.py [--seeds 0,1] [--steps 120] [--recipes a,b,...] [--out runs/recipes]

Trains every recipe at the demo budget (ssltk/configs/demo.yaml: resnet18, 64 px, batch 32, 100 steps) on the
built-in synthetic train episodes, once per seed, then probes all bundles of a seed together on the
held-out synthetic probe episodes (``ssltk.probe.run_probe`` with ``--compare``), next to a random
init and raw pixels. Writes ``benchmarks/results/recipe.json``, ``docs/images/recipe.png`` and
prints a markdown table (mean and [min, max] over seeds) for docs/recipe.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

# layout-prediction's defaults before the edge target (the scan's "layout" recipes were run with these)
PIX16 = {"target": "pixels", "side": 16, "edge_side": 0}
# layout-prediction's defaults before the colour part (the edge-target recipes were run with these)
P8E16 = {"target": "pixels+edges", "side": 8, "edge_side": 16}
GEO = {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}  # the geometry-safe views
RECIPES: dict[str, dict] = {
    "per-frame": {"per-frame": {}},
    "temporal": {"temporal-infonce": {}},
    "temporal-noaug": {"temporal-infonce": {}, "_augment": {"enabled": False}},
    # 4 frames per sample, 2x the frames of the pair objectives (reported as frames/step).
    "multi-camera": {"multi-camera": {}},
    "multi-positive": {"multi-positive": {"clip": 2, "stride": 3, "window": 3, "cameras": "front,front_left"}},
    "temporal+per-frame": {"temporal-infonce": {}, "per-frame": {"weight": 0.5}},
    # geometry-safe views (issue 14): one crop box per sample, photometric jitter, rig-aware mirror
    "temporal-geo": {"temporal-infonce": {}, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    # resolution lever: the same recipe at 96 px (resnet18's last map 3x3 instead of 2x2)
    "temporal-geo-96": {"temporal-infonce": {}, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5},
                        "_config": {"image_size": 96}},
    "future-prediction": {"future-prediction": {}},
    "temporal+future": {"temporal-infonce": {}, "future-prediction": {"weight": 0.5}},
    # layout lever: the pooled embedding must also decode a 16x16 thumbnail (linear decoder)
    "layout": {"layout-prediction": PIX16, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    "temporal-geo+layout": {"temporal-infonce": {}, "layout-prediction": {**PIX16, "weight": 1.0},
                            "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    "temporal-geo+layout-future": {"temporal-infonce": {}, "layout-prediction": {**PIX16, "weight": 1.0, "dt": "2-6"},
                                   "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    "per-frame+layout": {"per-frame": {}, "layout-prediction": {**PIX16, "weight": 1.0}},
    "layout-future": {"layout-prediction": {**PIX16, "dt": "2-6"}, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    "layout-96": {"layout-prediction": PIX16, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5},
                  "_config": {"image_size": 96}},
    "per-frame-96": {"per-frame": {}, "_config": {"image_size": 96}},
    "layout-32": {"layout-prediction": {**PIX16, "side": 32}, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    "layout-noaug": {"layout-prediction": PIX16, "_augment": {"enabled": False}},
    "layout+temporal": {"layout-prediction": PIX16, "temporal-infonce": {"weight": 0.25},
                        "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
    # edge targets (benchmarks/target_ceiling.py): grey edge magnitudes, per image; p8e16 = the defaults before colour
    "layout-e8": {"layout-prediction": {"target": "edges", "side": 8, "edge_side": 8}, "_augment": GEO},
    "layout-pe8": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 8}, "_augment": GEO},
    "layout-p8e16": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO},
    "layout-p8e16-96": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO,
                        "_config": {"image_size": 96}},
    "layout-p8e16-lr4": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO,
                         "_config": {"lr": 0.004}},
    "layout-p8e16-lr8": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO,
                         "_config": {"lr": 0.008}},
    "layout-p8e16-b64": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO,
                         "_config": {"batch_size": 64, "lr": 0.004}},
    "layout-p8e16+temporal05": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16},
                                "temporal-infonce": {"weight": 0.05}, "_augment": GEO},
    # The 10-CPU-minute budget at 96 px (issue 14): steps calibrated on a 2-core AMD EPYC with AVX512-BF16
    # (precision auto = bf16): layout 44 s, per-frame 70 s, temporal-infonce 61 s per 100 steps, uncontended.
    "layout-edges-10min": {"layout-prediction": {"target": "pixels+edges", "side": 8, "edge_side": 16}, "_augment": GEO,
                           "_config": {"image_size": 96, "steps": 1350}},
    "per-frame-10min": {"per-frame": {}, "_config": {"image_size": 96, "steps": 850}},
    # per-frame at the time layout-b64c-10min takes (per-frame ~50 s per 100 steps uncontended, measured 2026-12-02)
    "per-frame-1200": {"per-frame": {}, "_config": {"image_size": 96, "steps": 1200}},
    # the contrastive baseline of issue 14's final round, given more time than default-10min: on a 2-core AMX Xeon
    # (2026-12-03) it took 573-660 s against default-10min's 488-541 s
    "per-frame-1500": {"per-frame": {}, "_config": {"image_size": 96, "steps": 1500}},
    "temporal-10min": {"temporal-infonce": {}, "_config": {"image_size": 96, "steps": 1000}},
    # retrieval levers for the edge target: colour kept in the thumbnail, or a little temporal-infonce
    "layout-p8fixed-e16": {"layout-prediction": {**P8E16, "normalize": "fixed"}, "_augment": GEO},
    "layout+temporal02": {"layout-prediction": P8E16, "temporal-infonce": {"weight": 0.02}, "_augment": GEO},
    "temporal-96": {"temporal-infonce": {}, "_config": {"image_size": 96}},
    "layout-pe16": {"layout-prediction": {"target": "pixels+edges", "side": 16, "edge_side": 16}, "_augment": GEO},
    # retrieval lever 2: coarse scene colour (not standardised per image) as a third decoded part
    "layout-pec2": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2}, "_augment": GEO},
    "layout-pec4": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 4}, "_augment": GEO},
    "layout-pec4w4": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 4, "colour_weight": 4}, "_augment": GEO},
    "layout-pec4w16": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 4, "colour_weight": 16}, "_augment": GEO},
    "layout-pec2w16": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 16}, "_augment": GEO},
    "layout-pec2w48": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 48}, "_augment": GEO},
    "layout-pec2w16-10min": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 16},
                             "_augment": GEO, "_config": {"image_size": 96, "steps": 1350}},
    # batch 64 at the same time: half the steps (layout ~88 s per 100 steps at batch 64, 96 px)
    "layout-b64-10min": {"layout-prediction": P8E16, "_augment": GEO,
                         "_config": {"image_size": 96, "steps": 675, "batch_size": 64, "lr": 0.004}},
    # batch 64 at the full budget: 1300 steps, 46 s per 100 steps uncontended on the bf16 machine (the
    # batch-32 layout runs above took ~450 s uncontended for 1350 steps, per-frame ~77 s per 100 steps)
    # the default since issue 14's third round (layout-prediction's defaults, spelled out)
    "layout-b64c-10min": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 16},
                          "_augment": GEO, "_config": {"image_size": 96, "steps": 1300, "batch_size": 64, "lr": 0.004}},
    # dy@1s levers for the default (its worst seed missed raw pixels' best by 0.003): a higher lr at batch 64,
    # and milder crops (the "crops small enough to keep lanes and horizon in place")
    "layout-b64c-lr6-10min": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 16},
                              "_augment": GEO, "_config": {"image_size": 96, "steps": 1300, "batch_size": 64, "lr": 0.006}},
    # the default config as it was in issue 14's final round (``ssltk pretrain --steps 1300`` then: layout-prediction's
    # defaults before the near part, augment auto = the geometry-safe views, 96 px, batch 64, lr 6e-3, warmup 30);
    # the old target is spelled out so that these recipes reproduce after the default gained 'near'.
    "default-10min": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour"}, "_config": {"steps": 1300}},
    # the same with 300 more steps (683-718 s on the AMX Xeon, which ran ~15 % slower per step that round)
    "default-1600": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour"}, "_config": {"steps": 1600}},
    # lane-offset levers for the default (its worst seed missed per-frame-1500's best by 0.001): a finer edge map,
    # so that where the lane markings are is decoded at 4 px (24) or 3 px (32) instead of 6 px at 96 px
    "default-e24": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour", "edge_side": 24}, "_config": {"steps": 1300}},
    "default-e32": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour", "edge_side": 32}, "_config": {"steps": 1300}},
    # stronger crops (the milder crop 0.85-1 lost 0.034 lane R² on seed 2): more of the lane markings' positions seen
    "default-crop40": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour"}, "_augment": {**GEO, "crop_scale": [0.4, 1.0]}, "_config": {"steps": 1300}},
    # a target with more lane position: the lower half's edges on an 8 x 32 grid (target_ceiling.py: lane +0.02-0.03
    # as features on probe seeds 0-2 over the default's parts)
    "default-near": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour+near"}, "_config": {"steps": 1300}},
    # the same at 1200 steps: default-near took 636-643 s for 1300 steps on the AMX Xeon, above the 10-minute budget
    "default-near-1200": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour+near"}, "_config": {"steps": 1200}},
    "default-crop25": {"_base": "default", "layout-prediction": {"target": "pixels+edges+colour"}, "_augment": {**GEO, "crop_scale": [0.25, 1.0]}, "_config": {"steps": 1300}},
    "layout-b64c-crop85-10min": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 2, "colour_weight": 16},
                                 "_augment": {**GEO, "crop_scale": [0.85, 1.0]},
                                 "_config": {"image_size": 96, "steps": 1300, "batch_size": 64, "lr": 0.004}},
    "layout-pec4-10min": {"layout-prediction": {"target": "pixels+edges+colour", "colour_side": 4}, "_augment": GEO,
                          "_config": {"image_size": 96, "steps": 1350}},
    "layout-fixed": {"layout-prediction": {**PIX16, "normalize": "fixed"}, "_augment": {"enabled": True, "shared_crop": True, "rig_flip_p": 0.5}},
}
# The probe rows the recipe is judged on (probe name prefix, metric).
KEY_ROWS = ("yaw_rate", "speed", "steering", "dy@1s", "lane_offset", "waypoint", "temporal", "cross-camera")


def train(recipe: str, seed: int, steps: int | None, root: Path) -> Path:
    from ssltk.cli.demo import demo_config_path
    from ssltk.train.config import _objectives_from_yaml, load_config
    from ssltk.train.loop import pretrain

    spec = dict(RECIPES[recipe])
    augment = spec.pop("_augment", None)
    extra = spec.pop("_config", {})  # other config keys of this recipe (image_size, ...)
    # "_base": "default" = the built-in default config (``ssltk pretrain`` without -c/-o), else the demo's
    base = None if spec.pop("_base", "demo") == "default" else demo_config_path()
    out = root / f"{recipe}-s{seed}"
    overrides = {"out": str(out), "seed": seed, "steps": steps, "augment": augment, **extra}
    cfg = load_config(base, overrides)
    if spec:  # a default-based recipe without objectives keeps the default's
        cfg.objectives = _objectives_from_yaml(spec)
    if (out / "ssltk.json").exists():
        return out  # resumable experiment: keep finished runs
    t0 = time.perf_counter()
    pretrain(cfg, overwrite=True)
    print(f"trained {recipe} seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def probe(bundles: list[Path], seed: int) -> dict:
    from ssltk.probe import run_probe

    return run_probe(bundles[0], None, compare=[str(b) for b in bundles[1:]], seeds=(seed,), out=None)


def _column_value(row: dict, column: str) -> float | None:
    values = row["per_seed"].get(column)
    return None if not values else values[0]


def collect(results: dict[int, dict], names: dict[int, list[str]]) -> dict:
    """recipe/baseline -> (probe, metric) -> list of values over seeds."""
    table: dict[str, dict[str, list[float]]] = {}
    for seed, res in results.items():
        cols = res["columns"]
        mapping = {"bundle": names[seed][0], "random_init": "random init", "raw_pixels": "raw pixels",
                   "ego_status": "ego status"}
        compare_cols = [c for c in cols if c.startswith("compare:")]
        for c, n in zip(compare_cols, names[seed][1:]):
            mapping[c] = n
        for row in res["rows"]:
            key = f"{row['probe']} | {row['metric']}"
            for col, name in mapping.items():
                v = _column_value(row, col)
                if v is not None:
                    table.setdefault(name, {}).setdefault(key, []).append(v)
    return table


def markdown(table: dict, seeds: list[int]) -> str:
    keys = [k for k in next(iter(table.values())) if k.split(" | ")[0].startswith(KEY_ROWS)]
    cols = list(table)
    lines = ["| probe | metric | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for k in keys:
        probe_name, metric = k.split(" | ")
        cells = []
        for c in cols:
            vals = table[c].get(k, [])
            cells.append(f"{statistics.mean(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]" if vals else "–")
        lines.append(f"| {probe_name} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nmean [min, max] over training/probe seeds {seeds}"


# The rule: beat these baselines on these rows beyond the seed spread (worst seed above their
# best), and keep temporal retrieval at least as good as the contrastive baseline's (mean over seeds).
RULE_ROWS = ("yaw_rate | R²", "steering | R²", "dy@1s | R²", "lane_offset | R²")
RULE_RETRIEVAL = ("temporal Δt=1 | R@1", "temporal Δt=5 | R@1", "temporal Δt=10 | R@1")


def verdict(table: dict, candidate: str, contrastive: str) -> list[tuple[str, str, bool, str]]:
    """``(row, against, passed, numbers)`` for every check of the rule; all must pass."""
    out = []
    cand = table[candidate]
    for row in RULE_ROWS:
        for other in (contrastive, "random init", "raw pixels"):
            a, b = cand.get(row), table.get(other, {}).get(row)
            if not a or not b:
                out.append((row, other, False, "missing"))
                continue
            out.append((row, other, min(a) > max(b), f"worst {min(a):.3f} vs best {max(b):.3f}"))
    for row in RULE_RETRIEVAL:
        a, b = cand.get(row), table.get(contrastive, {}).get(row)
        if not a or not b:
            out.append((row, contrastive, False, "missing"))
            continue
        ma, mb = statistics.mean(a), statistics.mean(b)
        out.append((row, contrastive, ma >= mb, f"mean {ma:.3f} vs {mb:.3f}"))
    return out


def chart(table: dict, path: Path, keys: list[str] | None = None) -> None:
    """Bars (mean, whiskers min..max over seeds) per probe row; ``keys``: the rows (default: KEY_ROWS')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if keys is None:
        keys = [k for k in next(iter(table.values())) if k.split(" | ")[0].startswith(KEY_ROWS)]
    cols = [c for c in table if any(k in table[c] for k in keys)]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.2 * len(keys), 4), sharey=False)
    for ax, k in zip(axes, keys):
        means = [statistics.mean(table[c].get(k, [float("nan")])) for c in cols]
        lo = [m - min(table[c].get(k, [m])) for m, c in zip(means, cols)]
        hi = [max(table[c].get(k, [m])) - m for m, c in zip(means, cols)]
        ax.bar(range(len(cols)), means, yerr=[lo, hi], color=[f"C{i}" for i in range(len(cols))])
        ax.set_title(k.replace(" | ", "\n"), fontsize=7)
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--out", default="runs/recipes")
    p.add_argument("--results", default="benchmarks/results/recipe.json", help="where the numbers go")
    p.add_argument("--chart", default="docs/images/recipe.png", help="where the chart goes")
    p.add_argument("--judge", default=None, metavar="CANDIDATE:CONTRASTIVE",
                   help="apply the issue-14 rule to CANDIDATE against CONTRASTIVE, random init and raw pixels")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    recipes = args.recipes.split(",")
    root = Path(args.out)
    results, names = {}, {}
    for seed in seeds:
        bundles = [train(r, seed, args.steps, root) for r in recipes]
        t0 = time.perf_counter()
        results[seed] = probe(bundles, seed)
        names[seed] = recipes
        print(f"probed seed {seed} in {time.perf_counter() - t0:.0f} s", flush=True)
    table = collect(results, names)
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps({"seeds": seeds, "table": table}, indent=1))
    Path(args.chart).parent.mkdir(parents=True, exist_ok=True)
    chart(table, Path(args.chart), list(RULE_ROWS + RULE_RETRIEVAL) if args.judge else None)
    print(markdown(table, seeds))
    if args.judge:
        candidate, _, contrastive = args.judge.partition(":")
        checks = verdict(table, candidate, contrastive)
        for row, other, ok, numbers in checks:
            print(f"{'pass' if ok else 'FAIL'}  {row} vs {other}: {numbers}")
        print(f"{candidate}: the rule {'holds' if all(c[2] for c in checks) else 'does NOT hold'}")


if __name__ == "__main__":
    main()
