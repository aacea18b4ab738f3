"""The builtin plugins' entry points: light objects that import their implementation when called.

``pyproject.toml`` declares one entry point per builtin (``per-frame =
"ssltk_builtins.entry_points:per_frame"``, ...), exactly as a third-party
distribution would. Loading an entry point imports only this module, so
commands that never build the registry (``ssltk --help``, ``ssltk data ...``)
do not pay for importing torch and timm; the implementation module is imported
the first time its hook runs (listing, ``pretrain``). An implementation that
fails to import then marks its plugin broken, as a failing entry point would.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

import ssltk


def _load(target: str) -> Any:
    """The object at ``"package.module:attr"``."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class BuiltinObjective:
    """Registers the objective class at ``target`` (``"module:Class"``) under its own ``name``, imported on first use."""

    def __init__(self, target: str) -> None:
        self.target = target

    @ssltk.hookimpl
    def register_objectives(self, register: Callable[..., Any]) -> None:
        cls = _load(self.target)
        register(cls.name, cls)


class BuiltinBackbones:
    """Registers the backbone family made by calling ``target`` (``"module:Class"``), imported on first use."""

    def __init__(self, target: str) -> None:
        self.target = target

    @ssltk.hookimpl
    def register_backbones(self, register: Callable[..., Any]) -> None:
        register(_load(self.target)())


timm = BuiltinBackbones("ssltk_builtins.timm_backbones:TimmFamily")
per_frame = BuiltinObjective("ssltk_builtins.per_frame:PerFrame")
temporal_infonce = BuiltinObjective("ssltk_builtins.temporal_infonce:TemporalInfoNCE")
multi_camera = BuiltinObjective("ssltk_builtins.multi_camera:MultiCamera")
multi_positive = BuiltinObjective("ssltk_builtins.multi_positive:MultiPositive")
future_prediction = BuiltinObjective("ssltk_builtins.future_prediction:FuturePrediction")
layout_prediction = BuiltinObjective("ssltk_builtins.layout_prediction:LayoutPrediction")
