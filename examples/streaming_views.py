"""Stream contract batches for two objectives' views from episode shards.

    python examples/streaming_views.py            # writes tiny shards to a temp folder first

The plan is the union of what the objectives ask for; each objective later
sees only its own slots and cameras (``plan.selections``).
"""

from __future__ import annotations

import sys
import tempfile

import torch

from ssltk.batch import normalize, select, to_device, validate_batch
from ssltk.data.stream.pipeline import build_loader
from ssltk.testing.shards import write_tiny_shards
from ssltk.views import DeltaRange, ViewPlan, ViewRequest


def main(data: str) -> None:
    plan = ViewPlan.build(
        {
            "temporal": ViewRequest(deltas=(DeltaRange.parse("0.2s-1s"),)),  # a partner 0.2-1 s later
            "multicam": ViewRequest(cameras="all", augmented_copy=True),  # every camera, two crops of t
        },
        data_cameras=["front", "left", "right"],
    )
    print("slots", plan.slots, "cameras", plan.cameras)
    loader = build_loader(data, plan, batch_size=8, image_size=32, steps_per_epoch=3, samples_per_segment=2, seed=0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    for batch in loader:
        B, T, V = validate_batch(batch)  # frames [B, T, V, 3, 32, 32] uint8
        batch = to_device(batch, device)
        batch["frames"] = normalize(batch["frames"], (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        temporal = plan.selections["temporal"]
        pairs = select(batch, temporal.slots, temporal.cameras)  # [B, 2, 1, ...]: t and t+Δt, front only
        valid = pairs["mask"][:, 1, 0]  # partners that exist (others are zeros: never use them)
        print(f"batch {tuple(batch['frames'].shape)}; pairs {tuple(pairs['frames'].shape)}; "
              f"valid partners {int(valid.sum())}/{B}; dt {pairs['dt'][valid, 1].min():.1f}-{pairs['dt'][valid, 1].max():.1f} s")  # fmt: skip
    print("skipped", {k: v for k, v in loader.skipped.items() if v} or "nothing")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            write_tiny_shards(tmp, episodes=4, length=40, cameras=("front", "left", "right"), image_size=(36, 64),
                              segment_length=16, overlap=10, fps=10.0)  # fmt: skip
            main(tmp)
