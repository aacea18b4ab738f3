"""``ssltk.testing.check_backbone`` and the trainer's step-0 check (``ssltk.backbones.validate_backbone``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import ssltk
from ssltk.backbones import validate_backbone
from ssltk.testing import check_backbone


class PoolBackbone(ssltk.Backbone):
    """Mean-pooled 1x1 convolution: the smallest thing that follows the contract."""

    def __init__(self, model: str, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 1)
        self.num_features = width
        self.data_config = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": [3, 16, 16], "interpolation": "bilinear"}
        self.family, self.model_name, self.model_kwargs = "pool", model, {"width": width}

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))

    def save_pretrained(self, directory, extra_config):
        from safetensors.torch import save_file

        save_file(self.state_dict(), str(Path(directory) / "weights.safetensors"))
        (Path(directory) / "pool.json").write_text(json.dumps({"width": self.num_features, **extra_config}))
        return ["weights.safetensors", "pool.json"]


class PoolFamily(ssltk.BackboneFamily):
    """Pooled 1x1 convolutions of a few widths."""

    name = "pool"
    summary = "pooled 1x1 convolutions (tests)"
    backbone_cls = PoolBackbone

    def list_models(self, pattern=None):
        return self.filter_names(["pool-4", "pool-8"], pattern)

    def create(self, model, *, img_size=None, in_chans=3, init=None, **kwargs):
        from safetensors.torch import load_file

        if not self.has_model(model):
            raise ssltk.UsageError(f"unknown model {model!r}")
        width = int(kwargs.pop("width", model.split("-")[1]))
        backbone = self.backbone_cls(model, width)
        if init is not None:
            path = Path(init)
            path = path / "weights.safetensors" if path.is_dir() else path
            if not path.is_file():
                raise ssltk.UsageError(f"init {init}: no such file")
            backbone.load_state_dict(load_file(str(path)))
        return backbone


def test_a_correct_family_passes_and_returns_the_backbone():
    backbone = check_backbone(PoolFamily)
    assert isinstance(backbone, PoolBackbone) and backbone.training
    check_backbone(PoolFamily(), model="pool-8")


@pytest.mark.slow
def test_the_timm_family_passes():
    from ssltk_builtins.timm_backbones import TimmFamily

    check_backbone(TimmFamily(), model="test_resnet")


def test_the_fixture_is_check_backbone(ssltk_check_backbone, ssltk_registry_with):
    assert ssltk_check_backbone is check_backbone
    registry = ssltk_registry_with(plugins=[("pool-plugin", _Plugin())])
    assert "pool" in registry.backbones and "per-frame" in registry.objectives
    assert registry.backbones["pool"].plugin.name == "pool-plugin"


class _Plugin:
    @ssltk.hookimpl
    def register_backbones(self, register):
        register(PoolFamily())


def _broken(**attrs):
    """A PoolFamily whose backbones or family differ by ``attrs``."""
    backbone_attrs = {k: v for k, v in attrs.items() if k in ("save_pretrained", "forward", "__init__")}
    cls = type("Broken", (PoolBackbone,), backbone_attrs)
    family_attrs = {k: v for k, v in attrs.items() if k not in backbone_attrs}
    return type("BrokenFamily", (PoolFamily,), {"backbone_cls": cls, **family_attrs})()


def _init_with(**changes):
    def __init__(self, model, width):
        PoolBackbone.__init__(self, model, width)
        for key, value in changes.items():
            setattr(self, key, value)

    return __init__


def _save_no_extra(self, directory):
    return PoolBackbone.save_pretrained(self, directory, {})


def _save_returns_none(self, directory, extra_config):
    PoolBackbone.save_pretrained(self, directory, extra_config)


def _save_lists_a_missing_file(self, directory, extra_config):
    return PoolBackbone.save_pretrained(self, directory, extra_config) + ["other.bin"]


def _save_writes_the_manifest(self, directory, extra_config):
    (Path(directory) / "ssltk.json").write_text("{}")
    return ["ssltk.json"]


def _save_nothing_loadable(self, directory, extra_config):
    (Path(directory) / "pool.json").write_text("{}")
    return ["pool.json"]


def _forward_per_pixel(self, x):
    return self.conv(x)


def _list_ignoring_pattern(self, pattern=None):
    return ["pool-4", "pool-8"]


def _create_ignoring_init(self, model, *, img_size=None, in_chans=3, init=None, **kwargs):
    return PoolBackbone(model, int(model.split("-")[1]))


def _create_requires_img_size(self, model, *, img_size=None, in_chans=3, init=None, **kwargs):
    if img_size is None:
        raise TypeError("img_size must be an int")
    return PoolFamily.create(self, model, img_size=img_size, init=init, **kwargs)


BROKEN = {
    "save_pretrained without extra_config": (dict(save_pretrained=_save_no_extra), "save_pretrained(directory, extra_config)"),
    "save_pretrained returns None": (dict(save_pretrained=_save_returns_none), "must return the list of file names"),
    "save_pretrained lists a missing file": (dict(save_pretrained=_save_lists_a_missing_file), "wrote no such file"),
    "save_pretrained writes ssltk.json": (dict(save_pretrained=_save_writes_the_manifest), "reserves for ssltk"),
    "init does not load the weights": (dict(create=_create_ignoring_init), "init must load the saved weights"),
    "save_pretrained writes no weights": (dict(save_pretrained=_save_nothing_loadable), "raised"),
    "img_size=None refused": (dict(create=_create_requires_img_size), "img_size=None"),
    "per-pixel features": (dict(forward=_forward_per_pixel), "[N, num_features]"),
    "pattern ignored": (dict(list_models=_list_ignoring_pattern), "fnmatch"),
    "name with capitals": (dict(name="Pool"), "lower case"),
    "no summary": (dict(summary=""), "summary"),
    "num_features not an int": (dict(__init__=_init_with(num_features=4.0)), "num_features must be an int"),
    "kwargs not JSON": (dict(__init__=_init_with(model_kwargs={"act": nn.ReLU})), "JSON-serialisable"),
    "family name mismatch": (dict(__init__=_init_with(family="other")), "family='other'"),
    "mean per channel": (dict(__init__=_init_with(data_config={"mean": [0.5], "std": [1.0] * 3, "input_size": [3, 8, 8]})),
                         "one per channel"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_broken_contract_is_named(case):
    attrs, message = BROKEN[case]
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_backbone(_broken(**attrs))


def test_a_family_class_that_is_not_a_backbone_family_is_refused():
    class Lookalike:
        name, summary = "look", "looks like a family"

    with pytest.raises(AssertionError, match="subclass of ssltk.BackboneFamily"):
        check_backbone(Lookalike())


@pytest.mark.parametrize("case", ["save_pretrained without extra_config", "save_pretrained returns None",
                                  "save_pretrained lists a missing file", "num_features not an int"])
def test_validate_backbone_catches_what_would_fail_after_training(case):
    attrs, message = BROKEN[case]
    backbone = _broken(**attrs).create("pool-4")
    with pytest.raises(ssltk.UsageError, match=re.escape(message)) as info:
        validate_backbone(backbone)
    assert "backbone pool:pool-4" in str(info.value)


def test_validate_backbone_save_false_only_checks_the_signature(tmp_path):
    backbone = _broken(save_pretrained=_save_returns_none).create("pool-4")
    validate_backbone(backbone, save=False)  # the signature is fine; only calling it finds the bug
    with pytest.raises(ssltk.UsageError):
        validate_backbone(backbone)


def test_validate_backbone_reports_an_exception_in_save_pretrained():
    def explode(self, directory, extra_config):
        raise OSError("disk on fire")

    backbone = _broken(save_pretrained=explode).create("pool-4")
    with pytest.raises(ssltk.UsageError, match="save_pretrained fails \\(OSError: disk on fire\\)"):
        validate_backbone(backbone)


def test_the_model_refuses_a_broken_backbone_before_training():
    from ssltk.train.model import SSLModel
    from ssltk.views import ViewPlan

    backbone = _broken(save_pretrained=_save_no_extra).create("pool-4")
    objective = ssltk.Objective(4)
    plan = ViewPlan.build({"o": objective.views()}, ["front"])
    with pytest.raises(ssltk.UsageError, match="save_pretrained"):
        SSLModel(backbone, {"o": objective}, {"o": 1.0}, plan, (0.5,) * 3, (0.5,) * 3)
    good = PoolFamily().create("pool-4")
    SSLModel(good, {"o": objective}, {"o": 1.0}, plan, (0.5,) * 3, (0.5,) * 3)
    assert torch.is_tensor(good.conv.weight)
