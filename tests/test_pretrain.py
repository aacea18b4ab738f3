"""`ssltk pretrain`: config resolution, bad input (exit 2, one line), end-to-end runs on tiny shards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.testing.shards import write_tiny_shards

runner = CliRunner()
TINY = ["--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front", "rear"), image_size=32, segment_length=10, overlap=4)
    return d


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


def invoke(app, args):
    return runner.invoke(app, ["pretrain", *args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    return " ".join(lines)


def test_dry_run_prints_resolved_config_with_precedence(app, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"steps": 7, "batch_size": 16, "objectives": {"temporal-infonce": {"dt": "2-6"}}}))
    r = invoke(app, ["--config", str(cfg), "--batch-size", "24", "--dry-run", "-o", "temporal-infonce", "-o", "multi-camera=0.5"])
    assert r.exit_code == 0, r.output
    out = yaml.safe_load(r.output)
    assert out["steps"] == 7  # from the file
    assert out["batch_size"] == 24  # the command line wins
    names = [(o["name"], o["weight"]) for o in out["objectives"]]
    assert names == [("temporal-infonce", 1.0), ("multi-camera", 0.5)]
    assert out["objectives"][0]["options"] == {"dt": "2-6"}  # file options kept for a re-selected objective


def test_set_overrides_objective_option_and_top_level_key(app):
    r = invoke(app, ["--dry-run", "-o", "temporal-infonce", "--set", "temporal-infonce.temperature=0.2", "--set", "lr=0.01"])
    assert r.exit_code == 0, r.output
    out = yaml.safe_load(r.output)
    assert out["lr"] == 0.01
    assert out["objectives"][0]["options"]["temperature"] == 0.2


@pytest.mark.parametrize(
    "args, expect",
    [
        (["-o", "temporal-infonse"], "did you mean 'temporal-infonce'"),
        (["--backbone", "resnet-18"], "did you mean"),
        (["--set", "stepz=3"], "did you mean 'steps'"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--batch-size", "1"], "too small"),
        (["--set", "lr=fast"], "lr must be a number"),
        (["-o", "temporal-infonce", "--set", "temporal-infonce.temperature=-1"], "temperature"),
        (["-o", "temporal-infonce", "--set", "temporal-infonce.nope=1"], "unknown option"),
        (["-o", "temporal-infonce=abc"], "weight"),
        (["--config", "/nonexistent.yaml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(app, args, expect):
    r = invoke(app, [*args, "--dry-run"])
    assert expect in one_line_error(r)


def test_data_path_with_no_shards(app, tmp_path):
    (tmp_path / "empty").mkdir()
    r = invoke(app, [*TINY, "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--steps", "1"])
    assert "no shards" in one_line_error(r)


def test_dt_longer_than_segments(app, shards, tmp_path):
    r = invoke(app, [*TINY, "--data", str(shards), "--out", str(tmp_path / "o"), "-o", "temporal-infonce", "--set", "temporal-infonce.dt=20"])
    assert "segments" in one_line_error(r)


def test_camera_the_data_lacks(app, shards, tmp_path):
    r = invoke(app, [*TINY, "--data", str(shards), "--out", str(tmp_path / "o"), "--set", "anchor_camera=front_left"])
    assert "camera" in one_line_error(r)


@pytest.mark.slow
def test_composed_objectives_train_and_bundle_loads_in_plain_timm(app, shards, tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--data", str(shards), "--out", str(out), "--steps", "4",
            "-o", "temporal-infonce", "-o", "multi-camera=0.5", "--set", "temporal-infonce.dt=1-4",
            "--set", "log_every=2", "--set", "checkpoint_every=2"]
    r = invoke(app, args)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "ssltk.json").read_text())
    assert [o["name"] for o in manifest["objectives"]] == ["temporal-infonce", "multi-camera"]
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    assert {"loss/temporal-infonce", "loss/multi-camera"} <= set(rows[-1])
    assert (out / "loss_curve.png").stat().st_size > 1000
    from ssltk.bundle import verify_bundle

    assert verify_bundle(out) == []
    import timm

    from ssltk.bundle import load_backbone

    plain = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    ours, pre = load_backbone(out)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain(x), ours(x))
    # a second run into the same folder needs --overwrite
    r2 = invoke(app, args)
    assert "--overwrite" in one_line_error(r2)


def test_config_is_validated_once_after_all_overrides(app):
    r = invoke(app, ["--batch-size", "6", "--set", "samples_per_segment=3", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert yaml.safe_load(r.output)["samples_per_segment"] == 3


def test_resume_refuses_model_defining_options(app, tmp_path):
    (tmp_path / "run_config.yaml").write_text(yaml.safe_dump({"steps": 3}))
    r = invoke(app, ["--resume", str(tmp_path), "--backbone", "resnet50"])
    assert "only --steps and run-time options" in one_line_error(r)


def test_demo_out_that_is_a_file_is_one_line(app, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = runner.invoke(app, ["demo", "--out", str(f)])
    assert "not a folder" in one_line_error(r)


@pytest.mark.slow
def test_future_prediction_composes_with_temporal_infonce(app, shards, tmp_path):
    out = tmp_path / "fp"
    args = [*TINY, "--data", str(shards), "--out", str(out), "--steps", "3",
            "-o", "temporal-infonce", "-o", "future-prediction=0.5", "--set", "temporal-infonce.dt=1-4",
            "--set", "future-prediction.dt=1-3", "--set", "future-prediction.camera=all",
            "--set", "log_every=1", "--set", "checkpoint_every=3"]
    r = invoke(app, args)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "ssltk.json").read_text())
    assert [(o["name"], o["weight"]) for o in manifest["objectives"]] == [("temporal-infonce", 1.0), ("future-prediction", 0.5)]
    # t, the infonce partner, two context partners and the predicted frame
    assert manifest["views"]["slots"] == ["t", "t+1..4f", "t+1f", "t+2f", "t+3..5f"]
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    telemetry = {"emb_std", "effective_rank", "pred_loss", "var_loss", "cov_loss", "ema_momentum", "rows"}
    assert {f"future-prediction/{k}" for k in telemetry} <= set(rows[-1])
    for row in rows:
        assert row["future-prediction/rows"] > 0 and row["future-prediction/effective_rank"] > 1
        total = row["loss/temporal-infonce"] + 0.5 * row["loss/future-prediction"]
        assert row["loss"] == pytest.approx(total, rel=1e-5)
    from ssltk.bundle import verify_bundle

    assert verify_bundle(out) == []
    state = torch.load(out / "train_state" / "modules.pt", weights_only=True)["model"]
    assert int(state["targets.future-prediction.last_step"]) == 3


def test_the_default_recipe_is_layout_prediction_with_geometry_safe_views(app):
    """docs/recipe.md: the default, the demo and the docs agree on the recipe the experiment chose."""
    from ssltk.cli.demo import demo_config_path
    from ssltk.data.stream.augment import AugmentConfig
    from ssltk.registry import Registry
    from ssltk.train.config import load_config
    from ssltk.train.loop import resolve_augment
    from ssltk.views import ViewPlan

    r = invoke(app, ["--dry-run"])
    assert r.exit_code == 0, r.output
    out = yaml.safe_load(r.output)
    assert [(o["name"], o["weight"]) for o in out["objectives"]] == [("layout-prediction", 1.0)]
    demo = yaml.safe_load(demo_config_path().read_text())
    assert list(demo["objectives"]) == ["layout-prediction"] and "augment" not in demo
    cfg = load_config(None, {})
    obj = Registry().objective("layout-prediction").obj(8)
    o = obj.options
    assert (o.target, o.side, o.edge_side, o.colour_side, o.colour_weight) == ("pixels+edges+colour+near", 8, 16, 2, 16.0)
    plan = ViewPlan.build({"layout-prediction": obj.views()}, ["front", "front_left", "front_right", "rear"])
    assert resolve_augment(cfg, plan) == AugmentConfig(enabled=True, shared_crop=True, rig_flip_p=0.5)
