"""Backbones: any ``timm`` architecture as a pooled feature extractor.

``--backbone resnet50`` (or ``timm:resnet50``) builds
``timm.create_model(name, pretrained=False, num_classes=0)``. Initial weights
come only from local files: a ``.safetensors``/``.pth`` file or an ssltk
bundle (``init=PATH``); nothing is downloaded.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ssltk
from ssltk import Backbone, BackboneFamily, UnknownNameError, UsageError

__all__ = ["TimmBackbone", "TimmFamily", "register_backbones"]

# Models whose input size is fixed by default and need img_size (ViT-like).
_SIZE_KWARG_HINT = ("vit", "deit", "beit", "eva", "swin", "cait", "xcit", "pit", "levit", "mvit")


class TimmBackbone(Backbone):
    """A timm model with ``num_classes=0``; ``forward`` returns pooled features ``[N, D]``."""

    def __init__(self, model: nn.Module, model_name: str, model_kwargs: dict[str, Any]) -> None:
        super().__init__()
        import timm.data

        self.model = model
        self.family = "timm"
        self.model_name = model_name
        self.model_kwargs = dict(model_kwargs)
        self.num_features = int(getattr(model, "num_features", 0) or model.head_hidden_size)
        cfg = timm.data.resolve_model_data_config(model)
        self.data_config = {
            "mean": [float(v) for v in cfg["mean"]],
            "std": [float(v) for v in cfg["std"]],
            "input_size": list(cfg["input_size"]),
            "interpolation": cfg.get("interpolation", "bilinear"),
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def save_pretrained(self, directory: Path, extra_config: dict[str, Any]) -> list[str]:
        """Write timm-native ``model.safetensors`` + ``config.json`` (loadable by ``local-dir:``)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        c, h, w = self.data_config["input_size"]
        config = {
            "architecture": self.model_name,
            "num_classes": 0,
            "num_features": self.num_features,
            "global_pool": getattr(self.model, "global_pool", None) and _pool_name(self.model),
            "model_args": self.model_kwargs,
            # Our own values, not the registry's default pretrained tag/licence/url.
            "pretrained_cfg": {
                "tag": "ssltk",
                "input_size": [c, h, w],
                "mean": self.data_config["mean"],
                "std": self.data_config["std"],
                "interpolation": self.data_config["interpolation"],
                "crop_pct": 1.0,
                "num_classes": 0,
                "license": "see ssltk.json",
            },
            **extra_config,
        }
        if config["global_pool"] is None:
            config.pop("global_pool")
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return ["model.safetensors", "config.json"]


def _pool_name(model: nn.Module) -> str | None:
    gp = getattr(model, "global_pool", None)
    if isinstance(gp, str):
        return gp
    pool_type = getattr(gp, "pool_type", None)
    return pool_type if isinstance(pool_type, str) else None


@lru_cache(maxsize=1)
def _all_models() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


class TimmFamily(BackboneFamily):
    """Any timm architecture (timm.list_models()) as a pooled feature extractor."""

    name = "timm"

    @property
    def summary(self) -> str:  # type: ignore[override]
        import timm

        return f"any of {len(_all_models())} timm {timm.__version__} architectures, e.g. resnet50, convnext_tiny"

    def list_models(self, pattern: str | None = None) -> list[str]:
        import timm

        return list(timm.list_models(pattern)) if pattern else list(_all_models())

    def has_model(self, model: str) -> bool:
        import timm

        # is_model() strips a pretrained tag ("resnet18.a1_in1k"); tags mean hub weights, which we never fetch.
        return "." not in model and timm.is_model(model)

    def create(
        self,
        model: str,
        *,
        img_size: int | None = None,
        in_chans: int = 3,
        init: str | None = None,
        **kwargs: Any,
    ) -> TimmBackbone:
        import timm

        if "." in model:
            raise UsageError(
                f"backbone {model!r} names pretrained hub weights, which ssltk never downloads; "
                f"use {model.split('.')[0]!r} and pass local weights with --init PATH"
            )
        if not timm.is_model(model):
            raise UnknownNameError("timm backbone", model, _all_models())
        model_kwargs: dict[str, Any] = {k: v for k, v in kwargs.items() if v is not None}
        if in_chans != 3:
            model_kwargs["in_chans"] = in_chans
        if img_size is not None and model.startswith(_SIZE_KWARG_HINT):
            model_kwargs.setdefault("img_size", img_size)
        try:
            net = timm.create_model(model, pretrained=False, num_classes=0, **model_kwargs)
        except TypeError as exc:
            raise UsageError(f"timm model {model!r} does not accept these arguments: {exc}") from None
        backbone = TimmBackbone(net, model, model_kwargs)
        if img_size is not None:
            backbone.data_config["input_size"] = [in_chans, img_size, img_size]
        if init:
            load_init_weights(backbone, init)
        return backbone


def load_init_weights(backbone: TimmBackbone, init: str) -> None:
    """Load weights from a local file or an ssltk bundle folder; all keys must match."""
    path = Path(init)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UsageError(f"--init {init}: no such file (give a .safetensors/.pth file or an ssltk bundle folder)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "state_dict_ema"):
            if isinstance(state, dict) and key in state and isinstance(state[key], dict):
                state = state[key]
                break
    result = backbone.model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UsageError(
            f"--init {init}: weights do not fit {backbone.model_name} "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys, "
            f"e.g. {(result.missing_keys or result.unexpected_keys)[0]!r})"
        )


@ssltk.hookimpl
def register_backbones(register) -> None:
    register(TimmFamily())
