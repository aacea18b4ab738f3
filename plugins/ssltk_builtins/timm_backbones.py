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

from ssltk import Backbone, BackboneFamily, UnknownNameError, UsageError

__all__ = ["TimmBackbone", "TimmFamily"]

# Models whose input size is fixed by default and need img_size (ViT-like); timm's
# pretrained_cfg.fixed_input_size catches the rest (mixer, maxvit, coatnet, hiera...).
_SIZE_KWARG_HINT = ("vit", "deit", "beit", "eva", "swin", "cait", "xcit", "pit", "levit", "mvit")


def _fixed_input_size(model: str) -> bool:
    """True if ``model`` is built for one input size and takes ``img_size``."""
    if model.startswith(_SIZE_KWARG_HINT):
        return True
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(model)
    except Exception:  # no default cfg for this name
        return False
    return bool(cfg is not None and cfg.fixed_input_size)


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
        size_added = img_size is not None and "img_size" not in model_kwargs and _fixed_input_size(model)
        if size_added:
            model_kwargs["img_size"] = img_size
        net = _build(model, model_kwargs, size_added)
        backbone = TimmBackbone(net, model, model_kwargs)
        if img_size is not None:
            backbone.data_config["input_size"] = [in_chans, img_size, img_size]
        if init:
            load_init_weights(backbone, init)
        return backbone


def _build(model: str, model_kwargs: dict[str, Any], size_added: bool) -> nn.Module:
    """``timm.create_model`` without a head; drops an ``img_size`` we added if the model takes none."""
    import timm

    try:
        return timm.create_model(model, pretrained=False, num_classes=0, **model_kwargs)
    except TypeError as exc:
        if size_added and "img_size" in str(exc):
            model_kwargs.pop("img_size")
            return _build(model, model_kwargs, False)
        raise UsageError(f"timm model {model!r} does not accept these arguments: {exc}") from None


def load_init_weights(backbone: TimmBackbone, init: str) -> None:
    """Load weights from a local file or an ssltk bundle folder; all keys must match.

    A classifier in the file (e.g. ``fc.*`` of an ImageNet checkpoint) is dropped:
    the backbone has no head.
    """
    path = Path(init)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.exists():
        raise UsageError(f"--init {init}: no such file (give a .safetensors/.pth file or an ssltk bundle folder)")
    try:
        state = _read_state_dict(path)
    except Exception as exc:  # truncated file, not a checkpoint, pickled code refused by weights_only
        raise UsageError(f"--init {init}: cannot read weights ({type(exc).__name__}: {_first_line(exc)})") from None
    state = _drop_classifier(backbone.model, state)
    try:
        result = backbone.model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch (another width, img_size or in_chans)
        raise UsageError(f"--init {init}: weights do not fit {backbone.model_name}: {_first_line(exc, 1)}") from None
    if result.missing_keys or result.unexpected_keys:
        raise UsageError(
            f"--init {init}: weights do not fit {backbone.model_name} "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys, "
            f"e.g. {(result.missing_keys or result.unexpected_keys)[0]!r})"
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    if not isinstance(state, dict):
        raise ValueError(f"expected a state_dict, found {type(state).__name__}")
    return state


def _drop_classifier(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the weights of the model's classifier (named by timm's pretrained_cfg) that it no longer has."""
    heads = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    own = set(model.state_dict())
    return {k: v for k, v in state.items() if k in own or not any(k.startswith(h + ".") for h in heads)}


def _first_line(exc: BaseException, index: int = 0) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[min(index, len(lines) - 1)] if lines else ""
