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


class BuiltinObjective:
    """Registers objective ``name`` = class ``attr`` of ``module``, imported on first use."""

    def __init__(self, name: str, module: str, attr: str) -> None:
        self.name, self.module, self.attr = name, module, attr

    @ssltk.hookimpl
    def register_objectives(self, register: Callable[..., Any]) -> None:
        register(self.name, getattr(importlib.import_module(self.module), self.attr))


class BuiltinBackbones:
    """Registers the backbone family made by ``attr()`` of ``module``, imported on first use."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    @ssltk.hookimpl
    def register_backbones(self, register: Callable[..., Any]) -> None:
        register(getattr(importlib.import_module(self.module), self.attr)())


timm = BuiltinBackbones("ssltk_builtins.timm_backbones", "TimmFamily")
per_frame = BuiltinObjective("per-frame", "ssltk_builtins.per_frame", "PerFrame")
temporal_infonce = BuiltinObjective("temporal-infonce", "ssltk_builtins.temporal_infonce", "TemporalInfoNCE")
multi_camera = BuiltinObjective("multi-camera", "ssltk_builtins.multi_camera", "MultiCamera")
multi_positive = BuiltinObjective("multi-positive", "ssltk_builtins.multi_positive", "MultiPositive")
future_prediction = BuiltinObjective("future-prediction", "ssltk_builtins.future_prediction", "FuturePrediction")
layout_prediction = BuiltinObjective("layout-prediction", "ssltk_builtins.layout_prediction", "LayoutPrediction")
