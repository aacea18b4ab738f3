"""The config files shown in the docs resolve as documented (``--dry-run``)."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.cli.demo import demo_config_path
from ssltk.plugins import get_plugin_manager
from ssltk.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_composed_example_config_dry_run():
    app = build_app(get_plugin_manager(load=["ssltk"]))
    r = CliRunner().invoke(app, ["pretrain", "--config", str(ROOT / "examples/configs/temporal_multicam.yaml"), "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert [(o["name"], o["weight"]) for o in cfg["objectives"]] == [("temporal-infonce", 1.0), ("multi-camera", 0.5)]
    assert cfg["objectives"][0]["options"] == {"dt": "2-10"}
    assert cfg["augment"]["crop_scale"] == [0.6, 1.0]


def test_packaged_demo_config_loads_and_is_documented():
    cfg = load_config(demo_config_path())
    text = (ROOT / "docs/pretrain.md").read_text()
    assert f"{cfg.image_size} px, batch {cfg.batch_size}, {cfg.steps} steps" in text


def test_augment_auto_follows_the_objectives_and_explicit_settings_win():
    from ssltk.train.loop import resolve_augment
    from ssltk.views import ViewPlan, ViewRequest

    temporal = ViewPlan.build({"t": ViewRequest()}, ["front"])
    per_frame = ViewPlan.build({"p": ViewRequest(augmented_copy=True)}, ["front"])
    cfg = load_config(None)
    assert cfg.augment is None  # auto
    assert resolve_augment(cfg, temporal).enabled is False
    assert resolve_augment(cfg, per_frame).enabled is True
    explicit = load_config(None, {"augment": {"enabled": True, "brightness": 0.1}})
    assert resolve_augment(explicit, temporal).enabled is True
    assert resolve_augment(explicit, temporal).brightness == 0.1
    assert load_config(None, {"augment": "auto"}).augment is None


def test_augment_auto_gives_geometry_safe_views_to_objectives_that_ask():
    from ssltk.train.loop import resolve_augment
    from ssltk.views import ViewPlan, ViewRequest

    cfg = load_config(None)
    rig = ["front", "front_left", "front_right", "rear"]
    asked = resolve_augment(cfg, ViewPlan.build({"l": ViewRequest(cameras="all", augment=True)}, rig))
    assert (asked.enabled, asked.shared_crop, asked.rig_flip_p, asked.hflip_p) == (True, True, 0.5, 0.0)
    front = resolve_augment(cfg, ViewPlan.build({"l": ViewRequest(augment=True)}, rig))
    assert front.rig_flip_p == 0.5  # front mirrors onto itself
    # front_left alone has no mirror partner in the views: no rig flip (instead of an error)
    left = resolve_augment(cfg, ViewPlan.build({"l": ViewRequest(cameras=("front_left",), augment=True)}, rig))
    assert (left.enabled, left.shared_crop, left.rig_flip_p) == (True, True, 0.0)
    # an augmented copy (per-frame) keeps the default augmentation, independent crops
    both = ViewPlan.build({"l": ViewRequest(augment=True), "p": ViewRequest(augmented_copy=True)}, rig)
    assert resolve_augment(cfg, both).shared_crop is False
    explicit = load_config(None, {"augment": {"enabled": False}})
    assert resolve_augment(explicit, ViewPlan.build({"l": ViewRequest(augment=True)}, rig)).enabled is False


def test_future_prediction_example_config_dry_run():
    app = build_app(get_plugin_manager(load=["ssltk"]))
    r = CliRunner().invoke(app, ["pretrain", "--config", str(ROOT / "examples/configs/temporal_future.yaml"), "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(r.output)
    assert [(o["name"], o["weight"]) for o in cfg["objectives"]] == [("temporal-infonce", 1.0), ("future-prediction", 0.5)]
    assert cfg["objectives"][1]["options"] == {"context": 3, "dt": "2-6", "momentum": 0.996}
    page = (ROOT / "docs/objectives/future-prediction.md").read_text()
    assert "ssltk pretrain --config examples/configs/temporal_future.yaml" in page
    # the command-line form shown on the page resolves too
    r = CliRunner().invoke(app, ["pretrain", "-o", "temporal-infonce", "-o", "future-prediction=0.5",
                                 "--set", "future-prediction.context=4", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["objectives"][1]["options"] == {"context": 4}
    assert "ssltk pretrain -o temporal-infonce -o future-prediction=0.5 --set future-prediction.context=4" in page
