"""ssltk: plugin-based self-supervised pretraining of vision backbones on driving video.

The public API for users and plugin authors lives here.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from ssltk._version import __version__
from ssltk.errors import SsltkError, UnknownNameError, UsageError
from ssltk.hookspecs import hookimpl
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.views import DeltaRange, ViewRequest

# Names whose modules import torch load on first use (PEP 562), so that `import ssltk` and the
# CLI's help stay fast: `ssltk --help` would otherwise spend seconds importing torch.
_LAZY = {
    # The Python API (ssltk/api.py); `ssltk.probe(...)` is the probe package, callable.
    "pretrain": "ssltk.api",
    "embed": "ssltk.api",
    "export": "ssltk.api",
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
    # Building blocks for plugin objectives (docs/writing_objectives.md, docs/losses.md).
    "ContrastiveObjective": "ssltk.contrastive",
    "ContrastiveOptions": "ssltk.contrastive",
    "Masks": "ssltk.contrastive",
    "Rows": "ssltk.contrastive",
    "near": "ssltk.contrastive",
    "same": "ssltk.contrastive",
    "ProjectionHead": "ssltk.heads",
    "InfoNCEOutput": "ssltk.losses",
    "masked_infonce": "ssltk.losses",
    "collapse_stats": "ssltk.losses",
    # Collectives for plugins (ssltk/distributed.py): each is the identity with one process.
    "world": "ssltk.distributed",
    "gather_with_grad": "ssltk.distributed",
    "gather_nograd": "ssltk.distributed",
    "all_reduce_sum": "ssltk.distributed",
    "ddp_mean": "ssltk.distributed",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ssltk.api import embed, export, pretrain
    from ssltk.backbones import Backbone, BackboneFamily
    from ssltk.batch import Batch, BatchContractError, validate_batch
    from ssltk.ema import EMA, TargetRequest
    from ssltk.contrastive import ContrastiveObjective, ContrastiveOptions, Masks, Rows, near, same
    from ssltk.heads import ProjectionHead
    from ssltk.distributed import all_reduce_sum, ddp_mean, gather_nograd, gather_with_grad, world
    from ssltk.losses import InfoNCEOutput, collapse_stats, masked_infonce
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
    "ContrastiveObjective",
    "ContrastiveOptions",
    "DeltaRange",
    "EMA",
    "InfoNCEOutput",
    "LossOutput",
    "Masks",
    "NoOptions",
    "Objective",
    "ProjectionHead",
    "Registry",
    "Rows",
    "SsltkError",
    "TargetRequest",
    "UnknownNameError",
    "UsageError",
    "ViewRequest",
    "__version__",
    "all_reduce_sum",
    "collapse_stats",
    "ddp_mean",
    "embed",
    "export",
    "gather_nograd",
    "gather_with_grad",
    "get_plugin_manager",
    "load_backbone",
    "hookimpl",
    "masked_infonce",
    "near",
    "pretrain",
    "probe",
    "same",
    "validate_batch",
    "world",
]
