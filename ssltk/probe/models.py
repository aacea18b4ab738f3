"""What the probe compares: the bundle's backbone, the same architecture randomly
initialised, and other bundles.

A bundle is a folder with timm-native ``model.safetensors`` + ``config.json``
(and ssltk's ``ssltk.json``), or a plain timm ``local-dir`` folder. Both load
with ``ssltk.bundle.load_backbone``, the loader of ``ssltk.load_backbone``, embed
and export; preprocessing (input size, mean, std, interpolation) is what it
returns, as in training. ``resolve_device`` is ``ssltk.device.resolve_device``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssltk.device import resolve_device  # noqa: F401 - the one device resolver, used by probe.run
from ssltk.errors import UsageError


@dataclass
class BundleInfo:
    """Where a bundle is and how to rebuild and feed its backbone."""

    path: Path
    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    input_size: tuple[int, int] = (224, 224)
    interpolation: str = "bilinear"

    @property
    def name(self) -> str:
        return self.path.name

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "architecture": self.architecture,
            "model_args": self.model_args,
            "input_size": list(self.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
        }


def read_bundle_info(path: str | Path) -> BundleInfo:
    """Parse the bundle's ``config.json``; ``UsageError`` when ``path`` is not a bundle."""
    path = Path(path).expanduser()
    cfg_path = path / "config.json"
    if not path.is_dir() or not cfg_path.exists():
        raise UsageError(
            f"{path} is not a bundle (expected a folder with config.json and model.safetensors; "
            "create one with `ssltk pretrain`)"
        )
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{cfg_path} is not valid JSON: {exc}") from None
    if "architecture" not in cfg:
        raise UsageError(f"{cfg_path} has no 'architecture'; is {path} an ssltk/timm bundle?")
    return _with_preprocess(BundleInfo(path, cfg["architecture"], dict(cfg.get("model_args") or {})), cfg.get("pretrained_cfg") or {})


def _with_preprocess(info: BundleInfo, pre: dict[str, Any]) -> BundleInfo:
    if pre.get("mean") is not None:
        info.mean = tuple(float(v) for v in pre["mean"])
    if pre.get("std") is not None:
        info.std = tuple(float(v) for v in pre["std"])
    if pre.get("input_size") is not None:
        info.input_size = tuple(int(v) for v in list(pre["input_size"])[-2:])
    if pre.get("interpolation"):
        info.interpolation = str(pre["interpolation"])
    return info


def load_bundle(path: str | Path) -> tuple[nn.Module, BundleInfo]:
    """The bundle's backbone (eval mode, by ``ssltk.bundle.load_backbone``) and its :class:`BundleInfo`."""
    from ssltk.bundle import load_backbone

    info = read_bundle_info(path)
    model, preprocess = load_backbone(info.path)
    return model, _with_preprocess(info, preprocess)


def random_init(info: BundleInfo, seed: int) -> nn.Module:
    """A randomly initialised backbone of the bundle's architecture (deterministic in ``seed``)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = timm.create_model(info.architecture, pretrained=False, num_classes=0, **info.model_args)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise UsageError(f"cannot build a random {info.architecture} for the baseline: {exc}") from None
    return model.eval()
