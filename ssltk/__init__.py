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



def load_backbone(path, device="cpu"):
    """Load a bundle's backbone: ``(model in eval mode, {"mean", "std", "input_size", "interpolation"})``.

    Same weights as ``timm.create_model("local-dir:PATH", pretrained=True)``; see docs/bundle_format.md.
    """
    from ssltk.bundle import load_backbone as _load

    return _load(path, device)


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
    "load_backbone",
    "hookimpl",
    "validate_batch",
]
