"""The builtin ``timm`` backbone family: names, kwargs, img_size, local init weights, errors."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import save_file

from ssltk.errors import UnknownNameError, UsageError
from ssltk.registry import Registry
from ssltk_builtins.timm_backbones import TimmBackbone, TimmFamily


@pytest.fixture(scope="module")
def family() -> TimmFamily:
    return TimmFamily()


def test_registered_as_timm_family():
    registry = Registry()
    entry, model = registry.backbone("timm:resnet18")
    assert entry.name == "timm" and model == "resnet18" and entry.plugin.dist == "ssltk"
    assert registry.backbone("resnet18")[1] == "resnet18"


def test_names(family):
    assert family.has_model("resnet18") and family.has_model("vit_tiny_patch16_224")
    assert not family.has_model("resnet18.a1_in1k")  # a pretrained tag means hub weights
    assert not family.has_model("resnet-18")
    assert family.list_models("convnext_at*") == ["convnext_atto", "convnext_atto_ols", "convnext_atto_rms"]
    assert len(family.list_models()) == len(timm.list_models()) > 1000
    assert timm.__version__ in family.summary


def test_unknown_name_suggests(family):
    with pytest.raises(UnknownNameError, match=r"did you mean 'resnet18'"):
        family.create("resnet-18")


def test_tagged_name_refuses_download(family):
    with pytest.raises(UsageError, match=r"never downloads; use 'resnet18' and pass local weights with --init"):
        family.create("resnet18.a1_in1k")


def test_pooled_features_and_metadata(family):
    b = family.create("resnet18", img_size=32)
    assert isinstance(b, TimmBackbone) and b.family == "timm" and b.model_name == "resnet18"
    assert b(torch.randn(2, 3, 32, 32)).shape == (2, 512) and b.num_features == 512
    assert b.model_kwargs == {}  # a CNN takes any size: img_size is not a constructor argument
    assert b.data_config["input_size"] == [3, 32, 32]
    assert b.data_config["mean"] == pytest.approx([0.485, 0.456, 0.406])


def test_vit_gets_img_size(family):
    b = family.create("vit_tiny_patch16_224", img_size=64).eval()
    assert b.model_kwargs == {"img_size": 64}
    assert b(torch.randn(1, 3, 64, 64)).shape == (1, 192)
    assert b.data_config["mean"] == pytest.approx([0.5, 0.5, 0.5])


def test_other_fixed_size_models_get_img_size(family):
    """Found through timm's pretrained_cfg.fixed_input_size, not a name list."""
    b = family.create("mixer_s32_224", img_size=64).eval()
    assert b.model_kwargs == {"img_size": 64}
    assert b(torch.randn(1, 3, 64, 64)).shape == (1, 512)


def test_kwargs_pass_through(family):
    b = family.create("resnet18", drop_path_rate=0.1, in_chans=1, img_size=32)
    assert b.model_kwargs == {"drop_path_rate": 0.1, "in_chans": 1}
    assert b.model.conv1.weight.shape[1] == 1
    assert b.data_config["input_size"] == [1, 32, 32]
    assert b.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 512)
    assert family.create("resnet18", drop_path_rate=None).model_kwargs == {}  # None means "not set"


def test_bad_kwarg_is_a_usage_error(family):
    with pytest.raises(UsageError, match="does not accept these arguments"):
        family.create("resnet18", no_such_option=3)


def _weights(name: str, seed: int, **kw) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=0, **kw).state_dict()


def _same(a: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a.state_dict()[k], v) for k, v in state.items())


def test_init_from_safetensors_pth_and_wrapped_pth(family, tmp_path):
    state = _weights("test_resnet", seed=1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pth")
    for name in ("w.safetensors", "w.pth", "wrapped.pth"):
        b = family.create("test_resnet", init=str(tmp_path / name))
        assert _same(b.model, state), name
    assert not _same(family.create("test_resnet").model, state)  # guards _same


def test_init_drops_classifier_of_a_supervised_checkpoint(family, tmp_path):
    torch.manual_seed(2)
    classifier = timm.create_model("test_resnet", num_classes=10)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    b = family.create("test_resnet", init=str(tmp_path / "cls.pth"))
    assert _same(b.model, {k: v for k, v in classifier.state_dict().items() if not k.startswith("fc.")})


def test_init_from_bundle_folder(family, tmp_path):
    src = family.create("test_convnext", img_size=32)
    src.save_pretrained(tmp_path, {})
    b = family.create("test_convnext", init=str(tmp_path))
    assert _same(b.model, src.model.state_dict())


def test_init_errors(family, tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        family.create("test_resnet", init=str(tmp_path / "nope.pth"))
    torch.save(_weights("test_byobnet", seed=0), tmp_path / "other.pth")
    with pytest.raises(UsageError, match=r"do not fit test_resnet \(\d+ missing, \d+ unexpected keys"):
        family.create("test_resnet", init=str(tmp_path / "other.pth"))
    torch.save(_weights("test_vit", 0, img_size=64), tmp_path / "vit64.pth")
    with pytest.raises(UsageError, match="size mismatch for pos_embed"):
        family.create("test_vit", img_size=96, init=str(tmp_path / "vit64.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="cannot read weights"):
        family.create("test_resnet", init=str(tmp_path / "junk.pth"))


def test_save_pretrained_config_is_timm_native(family, tmp_path):
    b = family.create("vit_tiny_patch16_224", img_size=64)
    names = b.save_pretrained(tmp_path, {"ssltk": {"k": 1}})
    assert names == ["model.safetensors", "config.json"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["num_classes"] == 0
    assert config["model_args"] == {"img_size": 64} and config["ssltk"] == {"k": 1}
    assert config["pretrained_cfg"]["tag"] == "ssltk" and config["pretrained_cfg"]["input_size"] == [3, 64, 64]
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), b.eval()(x))


def test_docs_yaml_example_builds(tmp_path):
    """The config fragment in docs/backbones.md loads and builds what it says."""
    import re
    from pathlib import Path

    from ssltk.train.config import load_config

    doc = (Path(__file__).resolve().parents[1] / "docs" / "backbones.md").read_text()
    (block,) = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    (tmp_path / "cfg.yaml").write_text(block)
    cfg = load_config(tmp_path / "cfg.yaml")
    b = TimmFamily().create(cfg.backbone, img_size=cfg.image_size, **cfg.backbone_kwargs)
    assert b.model_kwargs == {"drop_path_rate": 0.1} and b.data_config["input_size"] == [3, 64, 64]
