"""EMA target networks: an exponential moving average of a module's weights.

BYOL (Grill et al., NeurIPS 2020), DINO (Caron et al., ICCV 2021) and JEPA-style
objectives (Assran et al., I-JEPA, CVPR 2023) regress or distil onto a *target*
network whose weights trail the trained (online) network:
``θ_target ← m·θ_target + (1 − m)·θ_online`` after every optimizer step, with
the momentum ``m`` raised from ``momentum`` to ``final_momentum`` on BYOL's
cosine schedule. See ``docs/ema.md``.

Two public pieces (``ssltk.EMA``, ``ssltk.TargetRequest``):

* :class:`EMA` wraps a frozen deep copy of a module. An objective may hold one of
  its own (an EMA of its projection head); the trainer updates every ``EMA``
  inside the model after each optimizer step, and its weights are part of the
  model's ``state_dict``, so ``--resume`` restores them exactly.
* :class:`TargetRequest`, returned by ``Objective.target_encoder()``, asks the
  trainer for an EMA copy of the *backbone*: the trainer builds it, runs it
  without gradient on the requested slots and passes the result to the
  objective's ``forward(emb, batch, target)``.

Under DDP every rank updates its EMA from the synchronised online weights, so
the copies stay identical without any communication.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ssltk.errors import UsageError

__all__ = ["EMA", "TargetRequest", "cosine_momentum"]


def _check_momentum(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
        raise UsageError(f"{what} must be a number in [0, 1], got {value!r}")
    return float(value)


def cosine_momentum(step: int, total_steps: int, momentum: float, final_momentum: float) -> float:
    """BYOL's schedule: ``final − (final − momentum)·(cos(π·k/K) + 1)/2`` with ``k = min(step, K)``.

    ``momentum`` at step 0, ``final_momentum`` at ``total_steps`` and after.
    """
    if total_steps <= 0:
        raise UsageError(f"total_steps must be >= 1 for a momentum schedule, got {total_steps}")
    k = min(max(int(step), 0), int(total_steps))
    return final_momentum - (final_momentum - momentum) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


class EMA(nn.Module):
    """A frozen copy of ``source`` whose weights follow it as an exponential moving average.

    ``momentum``: ``m`` at step 0; ``final_momentum``: ``m`` at the last step (cosine
    schedule in between), ``None`` for a constant ``m``. :meth:`update` applies
    ``θ ← m·θ + (1 − m)·θ_source`` to every parameter and copies the buffers
    (BatchNorm statistics) from ``source``. The copy never requires gradient;
    calling the EMA runs it under ``torch.no_grad()`` in the mode (train/eval)
    of the surrounding model. ``state_dict()`` holds the copy's weights and the
    step of the last update (``last_step``).
    """

    def __init__(self, source: nn.Module, momentum: float = 0.996, final_momentum: float | None = 1.0) -> None:
        super().__init__()
        if not isinstance(source, nn.Module):
            raise UsageError(f"EMA needs a torch.nn.Module to follow, got {type(source).__name__}")
        self.momentum = _check_momentum(momentum, "EMA momentum")
        self.final_momentum = None if final_momentum is None else _check_momentum(final_momentum, "EMA final_momentum")
        self.module = copy.deepcopy(source)
        for p in self.module.parameters():
            p.requires_grad_(False)
            p.grad = None
        # A plain attribute, not a submodule: the source's weights must not appear twice in the
        # state_dict, and they belong to whoever owns the source (the trainer, the objective).
        self.__dict__["_source"] = source
        self.register_buffer("last_step", torch.zeros((), dtype=torch.int64))
        self.last_momentum = float("nan")

    @property
    def source(self) -> nn.Module:
        """The module this EMA follows."""
        return self.__dict__["_source"]

    def momentum_at(self, step: int, total_steps: int | None = None) -> float:
        """The momentum of the update after optimizer step ``step`` of ``total_steps``."""
        if self.final_momentum is None or self.final_momentum == self.momentum:
            return self.momentum
        if total_steps is None:
            raise UsageError("this EMA has a momentum schedule: update(step, total_steps) needs total_steps")
        return cosine_momentum(step, total_steps, self.momentum, self.final_momentum)

    @torch.no_grad()
    def update(self, step: int, total_steps: int | None = None) -> float:
        """``θ ← m·θ + (1 − m)·θ_source`` with ``m = momentum_at(step, total_steps)``; returns ``m``.

        Call it once after each optimizer step (the trainer does, for every ``EMA``
        in the model). The arithmetic is exactly ``m * θ + (1 - m) * θ_source`` in
        the parameters' dtype, so it is deterministic and the same on every rank.
        """
        m = self.momentum_at(step, total_steps)
        ema = list(self.module.parameters())
        src = [p.detach() for p in self.source.parameters()]
        if len(ema) != len(src) or any(a.shape != b.shape for a, b in zip(ema, src)):
            raise RuntimeError("EMA: the source module's parameters no longer match the copy's")
        if ema:
            torch._foreach_mul_(ema, m)
            torch._foreach_add_(ema, torch._foreach_mul(src, 1.0 - m))
        for b_ema, b_src in zip(self.module.buffers(), self.source.buffers()):
            b_ema.copy_(b_src)
        self.last_step.fill_(int(step))
        self.last_momentum = m
        return m

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, final_momentum={self.final_momentum}"

    @staticmethod
    def update_all(model: nn.Module, step: int, total_steps: int | None = None) -> dict[str, float]:
        """Update every :class:`EMA` inside ``model`` (not those nested in another EMA's copy).

        Returns ``{module path: momentum used}``. This is what the trainer calls after
        each optimizer step; a custom training loop can call it the same way.
        """
        done: dict[str, float] = {}
        for name, module in model.named_modules():
            if isinstance(module, EMA) and not any(name.startswith(p + ".") for p in done):
                done[name] = module.update(step, total_steps)
        return done


@dataclass(frozen=True)
class TargetRequest:
    """What ``Objective.target_encoder()`` returns to get an EMA target encoder of the backbone.

    ``slots``: positions in the objective's *own* slot list (the order of its
    :class:`ssltk.ViewRequest`: ``t`` first, then ``t:aug`` if asked, then one per
    Δt range) on which the trainer runs the target encoder. ``forward`` then gets
    ``target`` as a float tensor ``[B, len(slots), V, D]`` without gradient, zeros
    where ``batch["mask"][:, slots]`` is False. ``momentum`` / ``final_momentum``:
    as for :class:`EMA` (cosine from one to the other over the run's steps;
    ``final_momentum=None`` keeps it constant).
    """

    slots: tuple[int, ...]
    momentum: float = 0.996
    final_momentum: float | None = 1.0

    def __post_init__(self) -> None:
        slots = tuple(self.slots) if isinstance(self.slots, (list, tuple)) else (self.slots,)
        if not slots or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in slots):
            raise UsageError(f"TargetRequest.slots must be a non-empty tuple of slot positions >= 0, got {self.slots!r}")
        if len(set(slots)) != len(slots):
            raise UsageError(f"TargetRequest.slots has duplicates: {slots}")
        object.__setattr__(self, "slots", slots)
        _check_momentum(self.momentum, "TargetRequest.momentum")
        if self.final_momentum is not None:
            _check_momentum(self.final_momentum, "TargetRequest.final_momentum")
