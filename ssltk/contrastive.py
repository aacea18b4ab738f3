"""Contrastive objectives as mask builders over the one InfoNCE kernel.

:class:`ContrastiveObjective` does the shared work of every contrastive
objective: flatten the ``[B, T, V, D]`` embeddings into rows, project them with
the objective's head, gather keys from every rank (option ``gather``), ask the
subclass for its masks, and call :func:`ssltk.losses.masked_infonce`. A
subclass implements :meth:`~ContrastiveObjective.views` and
:meth:`~ContrastiveObjective.masks` only; it never touches logits.

Anchors are the local rows, keys the rows of all ranks (``docs/losses.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ssltk.batch import Batch
from ssltk.distributed import all_reduce_sum, gather_nograd, gather_with_grad, world
from ssltk.errors import UsageError
from ssltk.heads import ProjectionHead
from ssltk.losses import check_temperature, masked_infonce
from ssltk.objectives import LossOutput, Objective

__all__ = ["ContrastiveObjective", "ContrastiveOptions", "Masks", "Rows", "near", "parse_cameras", "same"]

_ID_FIELDS = ("valid", "episode", "frame", "camera", "slot", "sample")


@dataclass
class ContrastiveOptions:
    """Options shared by every contrastive objective."""

    temperature: float = field(default=0.1, metadata={"help": "softmax temperature tau > 0"})
    proj_dim: int = field(default=128, metadata={"help": "projection head output size (0 = no head)"})
    hidden_dim: int = field(default=512, metadata={"help": "projection head hidden size (0 = one linear layer)"})
    gather: bool = field(default=True, metadata={"help": "use every rank's rows as keys under torch.distributed"})

    def validate(self) -> None:
        check_temperature(self.temperature)
        for name in ("proj_dim", "hidden_dim"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Rows:
    """One row per ``(sample, slot, camera)`` of a sub-batch, flattened in that order.

    ``sample`` is unique across ranks (``rank << 32 | b``); ``camera`` and
    ``slot`` are positions in the objective's own camera and slot lists.
    ``shape`` is ``(B, T, V)`` of the local batch (``None`` for gathered keys).
    """

    valid: torch.Tensor
    episode: torch.Tensor
    frame: torch.Tensor
    camera: torch.Tensor
    slot: torch.Tensor
    sample: torch.Tensor
    shape: tuple[int, int, int] | None = None

    @classmethod
    def from_batch(cls, batch: Batch, device: torch.device, rank: int = 0) -> "Rows":
        mask = batch["mask"].to(device)
        B, T, V = mask.shape
        long = dict(dtype=torch.long, device=device)
        grid = lambda x: x.reshape(-1)  # noqa: E731
        return cls(
            valid=grid(mask.bool()),
            episode=grid(batch["episode"].to(device)[:, :, None].expand(B, T, V)),
            frame=grid(batch["frame_index"].to(device)[:, :, None].expand(B, T, V)),
            camera=grid(torch.arange(V, **long)[None, None, :].expand(B, T, V)),
            slot=grid(torch.arange(T, **long)[None, :, None].expand(B, T, V)),
            sample=grid((torch.arange(B, **long) + (rank << 32))[:, None, None].expand(B, T, V)),
            shape=(B, T, V),
        )

    def ids(self) -> torch.Tensor:
        """``[N, 6]`` int64, to send to other ranks."""
        return torch.stack([getattr(self, f).long() for f in _ID_FIELDS], dim=1)

    @classmethod
    def from_ids(cls, ids: torch.Tensor) -> "Rows":
        cols = dict(zip(_ID_FIELDS, ids.unbind(1)))
        cols["valid"] = cols["valid"].bool()
        return cls(**cols)

    def partner(self, field_name: str) -> torch.Tensor:
        """``field`` of the row with the same sample and camera in the other slot (``T == 2`` only)."""
        if self.shape is None or self.shape[1] != 2:
            raise ValueError("partner() needs local rows with exactly two slots")
        return getattr(self, field_name).view(self.shape).flip(1).reshape(-1)


class Masks(NamedTuple):
    """What a subclass returns: ``[N, M]`` positives, optional exclusions, optional anchor rows ``[N]``."""

    positives: torch.Tensor
    exclude: torch.Tensor | None = None
    anchors: torch.Tensor | None = None


def same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` bool: ``a[i] == b[k]``."""
    return a[:, None] == b[None, :]


def near(anchor_frame: torch.Tensor, anchors: Rows, keys: Rows, window: int) -> torch.Tensor:
    """``[N, M]`` bool: same episode and ``|anchor_frame[i] - keys.frame[k]| <= window``.

    Episodes are renumbered ``0..E-1`` and laid out on one time axis with gaps
    wider than ``window``, so one subtraction on the narrowest integer type
    answers both questions (``[N, M]`` temporaries of 2 bytes per entry when they fit).
    """
    n = anchor_frame.shape[0]
    episode = torch.cat([anchors.episode, keys.episode])
    frame = torch.cat([anchor_frame, keys.frame]).long()
    if episode.numel() == 0:
        return torch.zeros(n, keys.frame.shape[0], dtype=torch.bool, device=frame.device)
    _, ep = torch.unique(episode, return_inverse=True)
    frame = frame - frame.min()
    code = ep * (int(frame.max()) + window + 1) + frame
    top = int(code.max())
    code = code.to(torch.int16 if top < 2**15 else torch.int32 if top < 2**31 else torch.int64)
    return (code[:n, None] - code[None, n:]).abs_() <= window


def parse_cameras(text: str) -> str | tuple[str, ...]:
    """Option text -> ``ViewRequest.cameras``: ``anchor``, ``all`` or ``name,name``."""
    text = text.strip()
    if text in ("anchor", "all"):
        return text
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UsageError("cameras must be 'anchor', 'all' or a comma-separated list of camera names")
    return names


class ContrastiveObjective(Objective):
    """Base of the builtin contrastive objectives (not registered itself)."""

    Options = ContrastiveOptions

    def __init__(self, embed_dim: int, options=None) -> None:
        super().__init__(embed_dim, options)
        self.options.validate()
        self.head = ProjectionHead(embed_dim, self.options.hidden_dim, self.options.proj_dim)

    def masks(self, anchors: Rows, keys: Rows) -> Masks:  # pragma: no cover - abstract
        """Positives (and exclusions) of local ``anchors`` against ``keys`` (all ranks' rows)."""
        raise NotImplementedError

    def forward(self, emb: torch.Tensor, batch: Batch) -> LossOutput:
        mask = batch["mask"]
        if emb.dim() != 4 or tuple(emb.shape[:3]) != tuple(mask.shape):
            raise ValueError(f"{self.name}: emb must be [B, T, V, D] with [B, T, V] = {tuple(mask.shape)}, got {tuple(emb.shape)}")
        rank, size = world() if self.options.gather else (0, 1)
        rows = Rows.from_batch(batch, emb.device, rank)
        z = self.head(emb.reshape(-1, emb.shape[-1]), rows.valid)
        if size > 1:
            key_z, offset = gather_with_grad(z)
            keys = Rows.from_ids(gather_nograd(rows.ids())[0])
        else:
            key_z, offset, keys = None, 0, rows
        m = self.masks(rows, keys)
        anchor_valid = rows.valid if m.anchors is None else (m.anchors & rows.valid)
        out = masked_infonce(
            z,
            m.positives,
            keys=key_z,
            anchor_valid=anchor_valid,
            key_valid=keys.valid,
            exclude=m.exclude,
            self_index=torch.arange(z.shape[0], device=z.device) + offset,
            temperature=self.options.temperature,
        )
        loss = out.loss
        if size > 1:
            # Normalise by the global number of anchors: the mean over ranks of these
            # losses (what DDP's gradient averaging optimises) is the global-batch loss.
            loss = out.loss_sum * size / all_reduce_sum(out.count).clamp(min=1)
        return LossOutput(loss, dict(out.stats))
