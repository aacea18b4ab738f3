"""ssltk: plugin-based self-supervised pretraining of vision backbones on driving video.

The public API for users and plugin authors lives here.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from ssltk.backbones import Backbone, BackboneFamily
from ssltk.batch import Batch, BatchContractError, validate_batch
from ssltk.errors import SsltkError, UnknownNameError, UsageError
from ssltk.hookspecs import hookimpl
from ssltk.objectives import LossOutput, NoOptions, Objective
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.views import DeltaRange, ViewRequest

try:
    __version__ = _metadata.version("ssltk")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "Backbone",
    "BackboneFamily",
    "Batch",
    "BatchContractError",
    "DeltaRange",
    "LossOutput",
    "NoOptions",
    "Objective",
    "Registry",
    "SsltkError",
    "UnknownNameError",
    "UsageError",
    "ViewRequest",
    "__version__",
    "get_plugin_manager",
    "hookimpl",
    "validate_batch",
]
