"""The objective contract: what a training objective plugin implements.

An objective is a ``torch.nn.Module`` that owns its projection head. It
declares its hyperparameters as a dataclass ``Options`` (typed, validated,
documented) and the views it needs (:meth:`Objective.views`). The trainer runs
the backbone once on every valid frame of the batch and calls ``forward(emb, batch)`` with only
the slots and cameras this objective asked for:

* ``emb``: float ``[B, T, V, D]`` backbone features (``D = embed_dim``); entries
  where ``batch["mask"]`` is False are zeros and must not be used;
* ``batch``: the sub-batch (``ssltk.batch``), same B, T, V.

It returns a :class:`LossOutput` whose ``loss`` is a finite scalar.

An objective that needs an EMA *target encoder* of the backbone (BYOL, JEPA)
returns an :class:`ssltk.TargetRequest` from :meth:`Objective.target_encoder`;
the trainer then also passes ``target``, the target encoder's features of the
requested slots (``forward(emb, batch, target)``, see ``ssltk.ema`` and
``docs/ema.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ssltk.batch import Batch
from ssltk.ema import TargetRequest
from ssltk.errors import UsageError
from ssltk.options import option_fields, options_dict, parse_options  # noqa: F401 - re-exported
from ssltk.views import ViewRequest


#: The peak learning rate of ``lr: auto`` when no objective of the run declares one.
DEFAULT_LR = 2e-3


def resolve_lr(lr: float | str, objectives: Any) -> float:
    """The peak learning rate of a run: ``lr`` itself, or for ``"auto"`` the smallest of the
    ``objectives``' (instances or classes) ``Objective.lr``, an objective that declares none counting
    as :data:`DEFAULT_LR` (so a composition never runs faster than any of its parts was measured)."""
    if lr != "auto":
        return float(lr)
    return min((float(getattr(o, "lr", None) or DEFAULT_LR) for o in objectives), default=DEFAULT_LR)


@dataclass
class LossOutput:
    """A scalar loss and detached diagnostics (floats or 0-d tensors) for logging."""

    loss: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class NoOptions:
    """An objective without hyperparameters."""


class Objective(nn.Module):
    """Base class of every objective. The docstring's first line is its summary."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: The peak AdamW learning rate this objective was measured with at batch 64, or None (= DEFAULT_LR).
    #: With the config's ``lr: auto`` (the default) a run uses the smallest of its objectives' (docs/pretrain.md).
    lr: ClassVar[float | None] = None

    def __init__(self, embed_dim: int, options: Any = None) -> None:
        super().__init__()
        if not isinstance(embed_dim, int) or embed_dim <= 0:
            raise UsageError(f"{self.name or type(self).__name__}: embed_dim must be a positive int, got {embed_dim!r}")
        self.embed_dim = embed_dim
        self.options = options if options is not None else self.Options()

    @classmethod
    def from_options(cls, embed_dim: int, **options: Any) -> "Objective":
        """Build with ``options`` validated against ``cls.Options`` (unknown keys suggest close ones)."""
        return cls(embed_dim, parse_options(cls, options))

    def views(self) -> ViewRequest:
        """The views this objective needs from each sample (default: the anchor frame only)."""
        return ViewRequest()

    def target_encoder(self) -> TargetRequest | None:
        """An EMA target encoder of the backbone to run on some of this objective's slots (default: none).

        Return a :class:`ssltk.TargetRequest` and ``forward`` is called as
        ``forward(emb, batch, target)`` with ``target`` ``[B, len(slots), V, D]``
        (no gradient, zeros where masked). See ``docs/ema.md``.
        """
        return None

    def forward(self, emb: torch.Tensor, batch: Batch) -> LossOutput:  # pragma: no cover - abstract
        raise NotImplementedError
