"""The backbone contract: families of named feature extractors.

A plugin registers a :class:`BackboneFamily` (e.g. ``timm``: every
``timm.list_models()`` name). ``family.create(model, ...)`` returns a
:class:`Backbone`: an ``nn.Module`` mapping float images ``[N, C, H, W]`` to
pooled features ``[N, num_features]``, which also knows its preprocessing and
how to save itself as deployable weights. No timm import here.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

from torch import nn


class Backbone(nn.Module):
    """A pooled feature extractor with the metadata a bundle needs.

    Attributes set by the family: ``num_features`` (int), ``data_config``
    (``{"mean", "std", "input_size", "interpolation"}``), ``family`` and
    ``model_name`` (str) and ``model_kwargs`` (JSON-serialisable dict).
    """

    num_features: int
    data_config: dict[str, Any]
    family: str
    model_name: str
    model_kwargs: dict[str, Any]

    def save_pretrained(self, directory: Path, extra_config: dict[str, Any]) -> list[str]:
        """Write deployable weights and config into ``directory``; return the file names written."""
        raise NotImplementedError


class BackboneFamily:
    """A named family of backbones. Subclass, set ``name`` and ``summary``, implement the three methods."""

    name: str = ""
    summary: str = ""

    def list_models(self, pattern: str | None = None) -> list[str]:
        """Model names in this family, optionally filtered by an fnmatch ``pattern``."""
        raise NotImplementedError

    def has_model(self, model: str) -> bool:
        return model in self.list_models()

    def create(
        self,
        model: str,
        *,
        img_size: int | None = None,
        in_chans: int = 3,
        init: str | None = None,
        **kwargs: Any,
    ) -> Backbone:
        """Build ``model`` (random init, or weights from the local file or bundle ``init``)."""
        raise NotImplementedError


def filter_names(names: list[str], pattern: str | None) -> list[str]:
    return names if not pattern else [n for n in names if fnmatch.fnmatch(n, pattern)]
