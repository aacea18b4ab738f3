"""A bundle fine-tunes with plain timm: `num_classes=K` gives a new head and keeps every trained weight."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file

from ssltk.bundle import write_bundle
from ssltk.train.progress import format_duration, log_line

FAMILIES = ["test_resnet", "test_convnext", "test_vit", "test_efficientnet", "test_byobnet", "test_nfnet"]


@pytest.mark.parametrize("name", FAMILIES)
def test_num_classes_gives_a_new_head_and_the_trained_backbone(name, tmp_path):
    from ssltk_builtins.timm_backbones import TimmFamily

    backbone = TimmFamily().create(name, img_size=32)
    out = write_bundle(tmp_path / name, backbone=backbone, heads={}, manifest={})
    model = timm.create_model(f"local-dir:{out}", pretrained=True, num_classes=7).eval()
    saved, state = load_file(str(out / "model.safetensors")), model.state_dict()
    new = set(state) - set(saved)
    assert new and all(k.rsplit(".", 1)[-1] in ("weight", "bias") for k in new)
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    assert model(torch.randn(2, *backbone.data_config["input_size"])).shape == (2, 7)


def test_log_line_is_complete():
    row = {"step": 20, "loss": 4.5, "loss/a": 4.0, "loss/b": 1.0, "lr": 1e-3, "samples_per_s": 512.0,
           "data_wait": 0.12, "eta_s": 83}
    line = log_line(row, 300)
    for part in ("step 20/300", "loss 4.5000 (a 4.0000, b 1.0000)", "lr 1.00e-03", "512.0 samples/s", "data-wait 12%", "eta 1m23s"):
        assert part in line, line
    assert format_duration(None) == "?" and format_duration(3725) == "1h02m"
