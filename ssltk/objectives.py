"""The objective contract: what a training objective plugin implements.

An objective is a ``torch.nn.Module`` that owns its projection head. It
declares its hyperparameters as a dataclass ``Options`` (typed, validated,
documented) and the views it needs (:meth:`Objective.views`). The trainer runs
the backbone once per distinct frame and calls ``forward(emb, batch)`` with only
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

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ssltk.batch import Batch
from ssltk.ema import TargetRequest
from ssltk.errors import UnknownNameError, UsageError
from ssltk.views import ViewRequest


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


def option_fields(cls: type[Objective]) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls.Options))


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UsageError(f"{where} must be true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise UsageError(f"{where} must be a number, got {value!r}")
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise UsageError(f"{where} must be {'an integer' if tp is int else 'a number'}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != int(value):
            raise UsageError(f"{where} must be an integer, got {value!r}")
        return out
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # YAML reads `dt: 4` as a number
        if not isinstance(value, str):
            raise UsageError(f"{where} must be text, got {value!r}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except UsageError as exc:
                errors.append(str(exc))
        raise UsageError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace(",", " ").split() if v]
        if not isinstance(value, (list, tuple)):
            value = [value]
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(value)
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(repr(a) for a in typing.get_args(tp))
            raise UsageError(f"{where} must be one of {choices}, got {value!r}")
        return value
    return value


def parse_options(cls: type[Objective], options: dict[str, Any]) -> Any:
    """Validate and coerce ``options`` for ``cls.Options``; the error names the objective and key."""
    fields = {f.name: f for f in option_fields(cls)}
    hints = typing.get_type_hints(cls.Options)
    kwargs = {}
    for key, value in options.items():
        key_norm = key.replace("-", "_")
        if key_norm not in fields:
            raise UnknownNameError(f"option of objective {cls.name!r}", key, list(fields))
        kwargs[key_norm] = _coerce(hints[key_norm], value, f"{cls.name}.{key_norm}")
    try:
        opts = cls.Options(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{cls.name}: {exc}") from None
    check = getattr(opts, "validate", None)
    if callable(check):
        check()
    return opts


def options_dict(options: Any) -> dict[str, Any]:
    """JSON-friendly dict of an Options dataclass (for manifests and listings)."""
    out = {}
    for f in dataclasses.fields(options):
        v = getattr(options, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
