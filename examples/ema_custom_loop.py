"""``ssltk.EMA`` outside the trainer: a BYOL-style target network in a plain PyTorch loop.

Run: ``python examples/ema_custom_loop.py``. ``tests/test_ema.py`` runs it, and
``docs/ema.md`` quotes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import ssltk


def main(steps: int = 30) -> dict[str, float]:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
    predictor = nn.Linear(8, 8)
    target = ssltk.EMA(online, momentum=0.9, final_momentum=1.0)  # a frozen copy that trails `online`
    optimizer = torch.optim.SGD([*online.parameters(), *predictor.parameters()], lr=0.1)
    for step in range(1, steps + 1):
        x = torch.randn(64, 8)
        view_a, view_b = x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)
        # the target runs without gradient: only `online` and `predictor` learn
        loss = 2 - 2 * F.cosine_similarity(predictor(online(view_a)), target(view_b), dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        momentum = target.update(step, total_steps=steps)  # θ_target ← m·θ_target + (1 − m)·θ_online
    # the EMA's state_dict is its weights and the step of its last update: save it with your checkpoint
    restored = ssltk.EMA(online, momentum=0.9, final_momentum=1.0)
    restored.load_state_dict(target.state_dict())
    same = all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), target.state_dict().values()))
    print(f"loss {loss.item():.4f}  last momentum {momentum:.3f}  restored exactly: {same}")
    return {"loss": loss.item(), "momentum": momentum, "restored": float(same), "last_step": int(restored.last_step)}


if __name__ == "__main__":
    main()
