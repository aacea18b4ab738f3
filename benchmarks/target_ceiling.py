"""How much of the motion and lane probes a decoding target holds (issue 14).

    python benchmarks/target_ceiling.py [--image-size 64] [--seed 0]

``layout-prediction`` makes the embedding linearly decode a target computed from the frame. If
the embedding held exactly that target, the probe would score about what the target itself
scores as features. This script probes candidate targets *as features* on the built-in probe
split, with ``ssltk probe``'s own ridge, split and input variant (``[f(t), f(t-1), |f(t) - f(t-1)|]``),
so a target can be chosen before any training. No model is trained; it takes seconds.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ssltk.data.shards.reader import iter_segments
from ssltk.probe.evaluate import Rows, regression_probe, temporal_probe
from ssltk.probe.frames import choose_kept, load_frames
from ssltk.probe.run import ProbeOptions, pick_camera, resolve_data
from ssltk.probe.split import split_episodes
from ssltk.probe.targets import build_targets
from ssltk_builtins.layout_prediction import edge_maps, near_edges, thumbnails

ROWS = ("yaw_rate", "steering", "dy@1s", "lane_offset", "speed")
DTS = (1, 10)  # temporal retrieval offsets (frames) scored on the targets as features
RETRIEVAL = tuple(f"Δt={dt} R@1" for dt in DTS)


def candidates(frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """name -> ``[N, D]`` features, from uint8 frames ``[N, 3, H, W]``."""

    def pix(side: int, per_image: bool = True, gray: bool = False) -> torch.Tensor:
        return thumbnails(frames, side, gray=gray, per_image=per_image).flatten(1)

    def edges(side: int) -> torch.Tensor:
        return edge_maps(frames, side).flatten(1)

    return {
        "raw pixels 16 (the baseline)": pix(16, per_image=False),
        "pixels 16 (layout default before)": pix(16),
        "pixels 16 grey": pix(16, gray=True),
        "pixels 8": pix(8),
        "pixels 32 grey": pix(32, gray=True),
        "edges 8": edges(8),
        "edges 16": edges(16),
        "pixels 8 + edges 8": torch.cat([pix(8), edges(8)], 1),
        "pixels 8 + edges 16": torch.cat([pix(8), edges(16)], 1),
        "pixels 16 + edges 16": torch.cat([pix(16), edges(16)], 1),
        "colour 2 (fixed, not per image)": pix(2, per_image=False),
        "colour 4 (fixed, not per image)": pix(4, per_image=False),
        "pixels 8 + edges 16 + colour 2": torch.cat([pix(8), edges(16), pix(2, per_image=False)], 1),
        "pixels 8 + edges 16 + colour 4": torch.cat([pix(8), edges(16), pix(4, per_image=False)], 1),
        "edges 32": edges(32),
        "near 8 x 32 (lower half's edges)": near_edges(frames, 8, 32).flatten(1),
        "pixels 8 + edges 16 + colour 2 + near 8 x 32 (the default)": torch.cat(
            [pix(8), edges(16), pix(2, per_image=False), near_edges(frames, 8, 32).flatten(1)], 1),
    }


def main(image_size: int = 64, seed: int = 0) -> dict[str, dict[str, float]]:
    torch.set_num_threads(2)
    opts = ProbeOptions(seeds=(seed,))
    table = load_frames(iter_segments(resolve_data(None)))
    anchor = pick_camera(table, opts.camera)
    choose_kept(table, opts.max_frames, anchor, opts.run_length)
    keys = table.kept_keys(anchor)
    rows = Rows(np.array([k[0] for k in keys]), np.array([k[1] for k in keys], dtype=np.int64))
    targets = build_targets(table, list(zip(rows.episodes.tolist(), rows.steps.tolist())), opts.horizons)
    size = (image_size, image_size)
    frames = torch.cat([table.decode(keys[i : i + 256], size, "bilinear") for i in range(0, len(keys), 256)])
    test = set(split_episodes(table.kept, seed, opts.test_fraction)[1])
    results: dict[str, dict[str, float]] = {}
    in_test = np.isin(rows.episodes, list(test))
    test_rows = Rows(rows.episodes[in_test], rows.steps[in_test])
    print(f"| target (as features) | numbers | " + " | ".join(ROWS + RETRIEVAL) + " |")
    print("|---|---|" + "---|" * (len(ROWS) + len(RETRIEVAL)))
    for name, X in candidates(frames).items():
        m = regression_probe(rows, X.numpy().astype(np.float64), targets, test, "t,t-1").metrics
        r2 = {probe: v for (probe, metric), v in m.items() if metric == "R²" and probe in ROWS}
        t = temporal_probe(test_rows, X.numpy()[in_test].astype(np.float64), DTS, ProbeOptions.max_queries, seed).metrics
        r2.update({f"Δt={dt} R@1": t[(f"temporal Δt={dt}", "R@1")] for dt in DTS})
        results[name] = r2
        cells = ROWS + RETRIEVAL
        print(f"| {name} | {X.shape[1]} | " + " | ".join(f"{r2.get(r, float('nan')):.2f}" for r in cells) + " |", flush=True)
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=64, help="frame size before the target is computed (the bundle's)")
    ap.add_argument("--seed", type=int, default=0, help="probe split seed")
    a = ap.parse_args()
    main(a.image_size, a.seed)
