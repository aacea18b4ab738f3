"""From a batch to a temporal InfoNCE loss, step by step (docs/temporal_ssl_infonce.md).

    python examples/infonce_walkthrough.py

Each step is quoted in the docs; ``tests/objectives/test_docs_objectives.py`` runs this file.
"""

from __future__ import annotations

import torch

from ssltk.batch import select, select_embeddings, validate_batch
from ssltk.contrastive import Rows
from ssltk.losses import masked_infonce
from ssltk.testing import fake_batch
from ssltk.views import ViewPlan
from ssltk_builtins.temporal_infonce import TemporalInfoNCE


def main() -> dict[str, float]:
    torch.manual_seed(0)

    # 1. The objective, its options, and the views it asks for.
    objective = TemporalInfoNCE.from_options(32, dt="2-6", guard=2, temperature=0.1, proj_dim=16, hidden_dim=64)
    plan = ViewPlan.build({"temporal-infonce": objective.views()}, data_cameras=["front", "left"])
    print(plan.describe())  # slots ['t', 't+2..6f'], cameras ['front'] (the anchor camera)

    # 2. A batch in the contract layout: B samples, T slots, V cameras (here random, small, with gaps).
    batch = fake_batch(8, plan, episodes=3, episode_length=30, missing=0.1, seed=1)
    B, T, V = validate_batch(batch)
    print(f"B={B} T={T} V={V}, frames missing: {int((~batch['mask']).sum())}")

    # 3. The backbone embeds every frame once; objectives see their own slots and cameras.
    emb = torch.randn(B, T, V, 32) * batch["mask"][..., None]  # stand-in for backbone features
    sel = plan.selections["temporal-infonce"]
    sub, sub_emb = select(batch, sel.slots, sel.cameras), select_embeddings(emb, sel.slots, sel.cameras)

    # 4. Rows: one per (sample, slot, camera), with the ids the masks are built from.
    rows = Rows.from_batch(sub, sub_emb.device)
    masks = objective.masks(rows, rows)
    print("positives per row:", masks.positives.sum(1).tolist())
    print("same episode within the guard (the row itself included):", (masks.exclude & ~masks.positives).sum(1).tolist())

    # 5. The head, then the one kernel: l2-normalise, cos/tau, masked log-softmax, mean over anchors.
    z = objective.head(sub_emb.reshape(-1, 32), rows.valid)
    out = masked_infonce(z, masks.positives, anchor_valid=rows.valid, exclude=masks.exclude, temperature=0.1)

    # 6. The objective does exactly steps 4-5 in forward().
    loss = objective(sub_emb, sub)
    assert torch.allclose(loss.loss, out.loss)
    print(f"loss {loss.loss.item():.4f}", {k: round(v, 3) for k, v in loss.metrics.items()})
    return loss.metrics


if __name__ == "__main__":
    main()
