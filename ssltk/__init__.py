"""ssltk: plugin-based self-supervised pretraining of vision backbones on driving video.

The public API for users and plugin authors lives here.
"""

from __future__ import annotations

import importlib as _importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from ssltk.errors import SsltkError, UnknownNameError, UsageError
from ssltk.hookspecs import hookimpl
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.views import DeltaRange, ViewRequest

# Names whose modules import torch load on first use (PEP 562), so that `import ssltk` and the
# CLI's help stay fast: `ssltk --help` would otherwise spend seconds importing torch.
_LAZY = {
    "Backbone": "ssltk.backbones",
    "BackboneFamily": "ssltk.backbones",
    "Batch": "ssltk.batch",
    "BatchContractError": "ssltk.batch",
    "validate_batch": "ssltk.batch",
    "EMA": "ssltk.ema",
    "TargetRequest": "ssltk.ema",
    "LossOutput": "ssltk.objectives",
    "NoOptions": "ssltk.objectives",
    "Objective": "ssltk.objectives",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ssltk.backbones import Backbone, BackboneFamily
    from ssltk.batch import Batch, BatchContractError, validate_batch
    from ssltk.ema import EMA, TargetRequest
    from ssltk.objectives import LossOutput, NoOptions, Objective


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(module), name)
    else:  # a submodule used as an attribute (`ssltk.batch.select`) after a plain `import ssltk`
        try:
            value = _importlib.import_module(f"ssltk.{name}")
        except ModuleNotFoundError as exn:
            if exn.name != f"ssltk.{name}":
                raise
            raise AttributeError(f"module 'ssltk' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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
    "EMA",
    "LossOutput",
    "NoOptions",
    "Objective",
    "Registry",
    "SsltkError",
    "TargetRequest",
    "UnknownNameError",
    "UsageError",
    "ViewRequest",
    "__version__",
    "get_plugin_manager",
    "load_backbone",
    "hookimpl",
    "validate_batch",
]
