"""smallcnn: a backbone family of small convolutional networks, not from timm.

Models ``smallcnn-8``, ``smallcnn-16`` and ``smallcnn-32`` (the number is the
width of the first stage): three stride-2 3x3 convolutions with normalisation
and ReLU (widths w, 2w, 4w), then global average pooling, so
``num_features = 4w``. Any input size works. ``backbone_kwargs``: ``norm``
(``batch`` or ``group``).

Saved as ``model.safetensors`` (the state_dict) and ``config.json`` (model
name, kwargs, preprocessing and ssltk's ``extra_config``). timm cannot read
that config; ``ssltk.load_backbone(bundle)`` rebuilds the model through this
family when the plugin is installed (``docs/writing_backbones.md``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import ssltk

__all__ = ["SmallCNN", "SmallCNNFamily"]

WIDTHS = {"smallcnn-8": 8, "smallcnn-16": 16, "smallcnn-32": 32}
NORMS = ("batch", "group")
DEFAULT_SIZE = 64
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if kind == "batch" else nn.GroupNorm(4, channels)


class SmallCNN(ssltk.Backbone):
    """Three stride-2 conv stages and global average pooling: ``[N, C, H, W] -> [N, 4w]``."""

    def __init__(self, model: str, *, img_size: int, in_chans: int = 3, norm: str = "batch") -> None:
        super().__init__()
        w = WIDTHS[model]
        layers: list[nn.Module] = []
        for c_in, c_out in ((in_chans, w), (w, 2 * w), (2 * w, 4 * w)):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), _norm(norm, c_out), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        # What the bundle and the trainer read (ssltk.Backbone):
        self.num_features = 4 * w
        mean, std = (MEAN, STD) if in_chans == 3 else ((0.5,) * in_chans, (0.25,) * in_chans)
        self.data_config = {"mean": list(mean), "std": list(std), "input_size": [in_chans, img_size, img_size],
                            "interpolation": "bilinear"}
        self.family, self.model_name = "smallcnn", model
        self.model_kwargs = {"norm": norm, "in_chans": in_chans}  # create(model, **model_kwargs) rebuilds it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))

    def save_pretrained(self, directory: Path, extra_config: dict[str, Any]) -> list[str]:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``; return their names."""
        from safetensors.torch import save_file

        directory = Path(directory)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
        config = {"architecture": self.model_name, "family": self.family, "model_args": self.model_kwargs,
                  "data_config": self.data_config, **extra_config}
        (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        return ["model.safetensors", "config.json"]


def _weights_file(init: str) -> Path:
    path = Path(init)
    if path.is_dir():  # an ssltk bundle (or any folder this family saved into)
        path = path / "model.safetensors"
    if not path.is_file():
        raise ssltk.UsageError(f"init {init}: no such file (give a .safetensors file or a smallcnn bundle folder)")
    return path


class SmallCNNFamily(ssltk.BackboneFamily):
    """Small 3-stage CNNs (smallcnn-8/16/32), a non-timm example family."""

    name = "smallcnn"
    summary = "small 3-stage CNNs (smallcnn-8, smallcnn-16, smallcnn-32), the plugin guide's example family"

    def list_models(self, pattern: str | None = None) -> list[str]:
        return self.filter_names(list(WIDTHS), pattern)

    def create(self, model: str, *, img_size: int | None = None, in_chans: int = 3, init: str | None = None,
               **kwargs: Any) -> SmallCNN:
        from safetensors.torch import load_file

        if model not in WIDTHS:
            raise ssltk.UsageError(f"unknown smallcnn model {model!r}; known: {', '.join(sorted(WIDTHS))}")
        in_chans = int(kwargs.pop("in_chans", in_chans))
        norm = kwargs.pop("norm", "batch")
        if kwargs:
            raise ssltk.UsageError(f"smallcnn does not accept these arguments: {', '.join(sorted(kwargs))} (only norm)")
        if norm not in NORMS:
            raise ssltk.UsageError(f"smallcnn norm must be one of {', '.join(NORMS)}, got {norm!r}")
        weights = _weights_file(init) if init is not None else None
        if img_size is None:  # rebuilding a saved model: keep its recorded size, else the default
            config = weights.parent / "config.json" if weights is not None else None
            saved = json.loads(config.read_text()) if config is not None and config.is_file() else {}
            img_size = int(saved.get("data_config", {}).get("input_size", [0, DEFAULT_SIZE])[1])
        backbone = SmallCNN(model, img_size=img_size, in_chans=in_chans, norm=norm)
        if weights is not None:
            try:
                backbone.load_state_dict(load_file(str(weights)))
            except (RuntimeError, OSError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [""])[0]
                raise ssltk.UsageError(f"init {init}: weights do not fit {model} ({first})") from None
        return backbone
