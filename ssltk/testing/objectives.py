"""Contract checks for objectives: :func:`fake_batch` and :func:`check_objective`.

``check_objective(MyObjective)`` is the first test every objective plugin
should have. It builds the view plan the trainer would build for the
objective alone, a contract-valid fake batch for it, random embeddings, and
checks: a finite scalar loss, gradients on every head parameter and on the
embeddings, float metrics, and no NaN when frames are missing (some, or all).
An objective that asks for a target encoder (``target_encoder()``) also gets
random ``target`` features of its requested slots, zeros where masked (or
noise, which it must ignore), and no gradient may reach them.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ssltk.batch import Batch, episode_id, select, validate_batch
from ssltk.objectives import LossOutput, Objective
from ssltk.views import DeltaRange, ViewPlan, ViewRequest

__all__ = ["check_objective", "fake_batch", "fake_batch_for"]

DEFAULT_CAMERAS = ("front", "left", "right")


def _offset(slot: str | DeltaRange | None, rng: torch.Generator, fps: float) -> int:
    """Frame offset of a slot relative to the anchor: 0 for ``t``/``t:aug``, random within a Δt range."""
    if slot is None or isinstance(slot, str):
        if slot not in (None, "t", "t:aug"):
            raise ValueError(f"slot {slot!r}: give 't', 't:aug' or a DeltaRange")
        return 0
    lo, hi = (slot.lo, slot.hi) if slot.unit == "frames" else (slot.lo * fps, slot.hi * fps)
    lo_f, hi_f = max(1, math.ceil(lo - 1e-9)), max(1, math.floor(hi + 1e-9))
    return int(torch.randint(lo_f, max(lo_f, hi_f) + 1, (1,), generator=rng))


def fake_batch(
    B: int = 4,
    slots: Sequence[str | DeltaRange] | ViewPlan = ("t",),
    cameras: Sequence[str] = ("front",),
    *,
    episodes: int = 2,
    episode_length: int = 40,
    missing: float = 0.0,
    image_size: tuple[int, int] = (8, 8),
    fps: float = 10.0,
    seed: int = 0,
) -> Batch:
    """A batch that passes :func:`ssltk.batch.validate_batch`, with episode/frame structure.

    ``slots``: ``"t"``, ``"t:aug"`` (same frame as ``t``) or a :class:`DeltaRange`
    (a partner ``Δt`` later, drawn per sample), or a :class:`ViewPlan` (its slots
    *and* cameras are used). Sample ``b`` comes from episode ``b % episodes``
    (so several samples share an episode) at a random anchor frame; partners past
    ``episode_length`` are missing (episode end); each other entry is missing with
    probability ``missing``. Missing frames are zero images with ``mask`` False.
    """
    if isinstance(slots, ViewPlan):
        names, specs, cameras = list(slots.slots), [d if d is not None else s for s, d in zip(slots.slots, slots.deltas)], slots.cameras
    else:
        specs = list(slots)
        names = [s.label if isinstance(s, DeltaRange) else s for s in specs]
    T, V = len(specs), len(cameras)
    rng = torch.Generator().manual_seed(seed)
    ep_ids = [episode_id(f"ep{i:04d}") for i in range(max(1, episodes))]
    episode = torch.tensor([[ep_ids[b % len(ep_ids)]] * T for b in range(B)], dtype=torch.int64)
    anchor = torch.randint(0, episode_length, (B,), generator=rng)
    offsets = torch.tensor([[_offset(s, rng, fps) for s in specs] for _ in range(B)], dtype=torch.int64).view(B, T)
    frame_index = anchor[:, None] + offsets
    mask = (frame_index < episode_length)[:, :, None].expand(B, T, V).clone()
    if missing > 0:
        mask &= torch.rand(B, T, V, generator=rng) >= missing
    H, W = image_size
    frames = torch.randint(0, 256, (B, T, V, 3, H, W), generator=rng, dtype=torch.uint8)
    frames *= mask[..., None, None, None].to(torch.uint8)
    timestamp = frame_index.double() / fps
    batch: Batch = {
        "frames": frames,
        "mask": mask,
        "episode": episode,
        "frame_index": frame_index,
        "timestamp": timestamp,
        "dt": (timestamp - timestamp[:, :1]).float(),
        "slots": names,
        "cameras": list(cameras),
        "ego": {},
    }
    validate_batch(batch)
    return batch


def fake_batch_for(objective: Objective, B: int = 6, cameras: Sequence[str] = DEFAULT_CAMERAS, **kwargs: Any) -> Batch:
    """The sub-batch ``objective`` would receive from the trainer (plan of this objective alone)."""
    name = objective.name or type(objective).__name__
    plan = ViewPlan.build({name: objective.views()}, cameras)
    full = fake_batch(B, plan, **kwargs)
    sel = plan.selections[name]
    return select(full, sel.slots, sel.cameras)


def _random_emb(batch: Batch, dim: int, seed: int, zero_masked: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A leaf ``[B, T, V, D]`` and the embeddings the objective sees.

    ``zero_masked``: masked entries are zeros (the contract); otherwise they hold
    noise, which a correct objective ignores.
    """
    g = torch.Generator().manual_seed(seed)
    leaf = torch.randn(*batch["mask"].shape, dim, generator=g).requires_grad_(True)
    return leaf, (leaf * batch["mask"][..., None] if zero_masked else leaf * 1.0)


def _fail(msg: str) -> None:
    raise AssertionError(msg)


def _check_output(out: Any, who: str, case: str, finite_metrics: bool = True) -> None:
    if not isinstance(out, LossOutput):
        _fail(f"{who} ({case}): forward must return ssltk.LossOutput, got {type(out).__name__}")
    loss = out.loss
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        _fail(f"{who} ({case}): loss must be a scalar tensor, got {getattr(loss, 'shape', type(loss))}")
    if not torch.isfinite(loss):
        _fail(f"{who} ({case}): loss is not finite: {loss.item()}")
    for key, value in out.metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1 or value.requires_grad:
                _fail(f"{who} ({case}): metric {key!r} must be a float or a detached 0-d tensor")
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(f"{who} ({case}): metric {key!r} must be a float, got {type(value).__name__}")
        if finite_metrics and not math.isfinite(value):
            _fail(f"{who} ({case}): metric {key!r} is not finite: {value}")


def _run(
    obj: Objective, batch: Batch, dim: int, seed: int, who: str, case: str, zero_masked: bool = True
) -> tuple[LossOutput, torch.Tensor]:
    """Forward and backward once; check the output and that every gradient is finite."""
    obj.zero_grad(set_to_none=True)
    leaf, emb = _random_emb(batch, dim, seed, zero_masked)
    torch.manual_seed(seed)  # objectives that draw random numbers see the same ones in every run
    request = obj.target_encoder()
    if request is None:
        out = obj(emb, batch)
    else:
        T = batch["mask"].shape[1]
        if max(request.slots) >= T:
            _fail(f"{who}: target_encoder() asks for slot {max(request.slots)}, but the objective has {T} slots")
        seen = {**batch, "mask": batch["mask"][:, list(request.slots)]}
        # A leaf that requires grad, to catch gradient flowing into the target (the trainer's has none).
        target_leaf, target = _random_emb(seen, dim, seed + 1000, zero_masked)
        out = obj(emb, batch, target)
        if out.loss.requires_grad:
            grad = torch.autograd.grad(out.loss, target_leaf, retain_graph=True, allow_unused=True)[0]
            if grad is not None and grad.abs().sum() > 0:
                _fail(f"{who} ({case}): gradient flows into the target encoder's features; detach them")
    # With every frame missing a metric may be undefined (NaN); the loss may not.
    _check_output(out, who, case, finite_metrics=batch["mask"].any())
    if out.loss.requires_grad:
        out.loss.backward()
    grads = [p.grad for p in obj.parameters() if p.grad is not None]
    if leaf.grad is not None:
        grads.append(leaf.grad)
    for g in grads:
        if not torch.isfinite(g).all():
            _fail(f"{who} ({case}): gradients contain NaN or inf")
    return out, leaf


def check_objective(
    objective: type[Objective] | Objective,
    *,
    options: dict[str, Any] | None = None,
    embed_dim: int = 16,
    batch_size: int = 6,
    cameras: Sequence[str] = DEFAULT_CAMERAS,
    missing: float = 0.3,
    seed: int = 0,
) -> LossOutput:
    """Assert that ``objective`` (a class or an instance) follows the objective contract.

    A class is built with ``from_options(embed_dim, **options)``. Returns the
    output of the run without missing frames. Raises ``AssertionError`` naming
    the objective and the failed check.
    """
    obj = objective.from_options(embed_dim, **(options or {})) if isinstance(objective, type) else objective
    embed_dim = getattr(obj, "embed_dim", embed_dim)
    who = obj.name or type(obj).__name__
    if not isinstance(obj, Objective):
        _fail(f"{who}: objectives must subclass ssltk.Objective")
    if not isinstance(obj.views(), ViewRequest):
        _fail(f"{who}: views() must return an ssltk.ViewRequest, got {type(obj.views()).__name__}")
    torch.manual_seed(seed)
    batch = fake_batch_for(obj, batch_size, cameras, seed=seed)
    out, leaf = _run(obj, batch, embed_dim, seed, who, "all frames present")
    if not out.loss.requires_grad:
        _fail(f"{who}: the loss does not depend on the embeddings (no grad_fn)")
    if leaf.grad is None or not leaf.grad.abs().sum() > 0:
        _fail(f"{who}: no gradient reaches the embeddings")
    for name, p in obj.named_parameters():
        if p.requires_grad and p.grad is None:
            _fail(f"{who}: parameter {name!r} gets no gradient")
    holes = fake_batch_for(obj, batch_size, cameras, seed=seed + 1, missing=missing)
    if holes["mask"].all():  # make sure at least one frame is missing
        holes["mask"][-1, -1, -1] = False
        holes["frames"][-1, -1, -1] = 0
    case = f"{missing:.0%} of frames missing"
    ref, _ = _run(obj, holes, embed_dim, seed + 1, who, case)
    noisy, leaf = _run(obj, holes, embed_dim, seed + 1, who, case + ", noise in masked entries", zero_masked=False)
    if not torch.allclose(ref.loss.detach(), noisy.loss.detach(), rtol=1e-5, atol=1e-6):
        _fail(f"{who}: the loss changes with the values of masked (missing) frames; it must ignore them")
    if leaf.grad is not None and leaf.grad[~holes["mask"]].abs().sum() != 0:
        _fail(f"{who}: masked (missing) frames receive gradient; they must be ignored")
    empty = fake_batch_for(obj, batch_size, cameras, seed=seed + 2)
    empty["mask"] = torch.zeros_like(empty["mask"])
    empty["frames"] = torch.zeros_like(empty["frames"])
    _run(obj, empty, embed_dim, seed + 2, who, "every frame missing")
    obj.zero_grad(set_to_none=True)
    return out
