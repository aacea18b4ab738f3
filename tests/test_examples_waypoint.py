"""examples/waypoint_finetune.py: waypoint geometry, episode stitching, and a short fine-tune that helps."""

from __future__ import annotations

import ast
import importlib.util
import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ssltk.bundle import write_bundle
from ssltk.data.shards.format import SegmentMeta, ShardSetWriter
from ssltk.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "waypoint_finetune.py"


@pytest.fixture(scope="module")
def wp():
    spec = importlib.util.spec_from_file_location("waypoint_finetune", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_straight_line_is_pure_forward_motion(wp):
    h, v, fps = 0.7, 8.0, 10.0
    t = np.arange(30) / fps
    x, y = 5 + v * t * math.cos(h), -2 + v * t * math.sin(h)
    out = wp.waypoints_in_ego_frame(x, y, [h] * 30, 3, [5, 10, 20])
    np.testing.assert_allclose(out, [[4.0, 0.0], [8.0, 0.0], [16.0, 0.0]], atol=1e-9)


def test_constant_turn_matches_circle_chord(wp):
    v, w, h0, fps = 10.0, 0.3, -2.0, 10.0
    t = np.arange(40) / fps
    heading = h0 + w * t
    x = 1 + v / w * (np.sin(heading) - math.sin(h0))
    y = 3 - v / w * (np.cos(heading) - math.cos(h0))
    out = wp.waypoints_in_ego_frame(x, y, heading, 4, [5, 20])
    expected = [[v / w * math.sin(w * tau), v / w * (1 - math.cos(w * tau))] for tau in (0.5, 2.0)]
    np.testing.assert_allclose(out, expected, atol=1e-9)  # a left turn (w > 0) gives dy > 0


def _image(speed: float, yaw_rate: float) -> bytes:
    """Brightness says the speed, a bar's column says the yaw rate: learnable from pixels."""
    img = np.full((32, 32, 3), int(20 + 14 * speed), np.uint8)
    col = int(16 + 40 * yaw_rate)
    img[:, max(0, col - 2) : col + 2] = (255, 40, 40)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def write_ego_shards(out: Path, episodes: int = 8, length: int = 40, seg: int = 16, fps: float = 10.0) -> None:
    rng = np.random.default_rng(0)
    with ShardSetWriter(out, max_segments=5) as writer:
        for e in range(episodes):
            v, w, h0 = rng.uniform(3, 12), rng.uniform(-0.3, 0.3), rng.uniform(-math.pi, math.pi)
            t = np.arange(length) / fps
            heading = h0 + w * t
            x = v / w * (np.sin(heading) - math.sin(h0))
            y = -v / w * (np.cos(heading) - math.cos(h0))
            for start in range(0, length, seg):
                steps = list(range(start, min(start + seg, length)))
                meta = SegmentMeta(
                    episode=f"ep{e:02d}", start=start, frames=steps, timestamps=[s / fps for s in steps],
                    cameras=["front"], image_size=[32, 32], fps=fps, episode_length=length,
                    ego={"x": [float(x[s]) for s in steps], "y": [float(y[s]) for s in steps],
                         "heading": [float(heading[s]) for s in steps], "speed": [v] * len(steps)},
                )
                writer.write(meta, {(i, "front"): _image(v, w) for i in range(len(steps))})


@pytest.fixture(scope="module")
def data_and_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("wp")
    write_ego_shards(root / "shards")
    torch.manual_seed(0)
    entry, model = Registry().backbone("test_resnet")
    backbone = entry.obj.create(model, img_size=32)
    write_bundle(root / "bundle", backbone=backbone, heads={}, manifest={"steps": 0})
    return root / "shards", root / "bundle"


def test_episodes_are_stitched_across_segments(wp, data_and_bundle):
    shards, _ = data_and_bundle
    episodes, camera = wp.read_episodes(str(shards), None)
    assert camera == "front" and len(episodes) == 8
    ep = episodes["ep00"]
    assert ep.fps == 10.0 and sorted(ep.images) == list(range(40)) and sorted(ep.ego["x"]) == list(range(40))


def test_examples_need_the_full_horizon(wp, data_and_bundle):
    shards, _ = data_and_bundle
    episodes, _ = wp.read_episodes(str(shards), None)
    cfg = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}
    x, y = wp.build_examples(episodes, ["ep00", "ep01"], cfg)
    assert x.shape == (2 * (40 - 20), 3, 32, 32) and y.shape == (40, 3, 2)  # +2 s = 20 frames ahead
    with pytest.raises(SystemExit, match="no frame has ego data"):
        wp.build_examples(episodes, ["ep00"], cfg, horizons=(5.0,))


def test_finetune_lowers_held_out_loss(wp, data_and_bundle, capsys):
    shards, bundle = data_and_bundle
    result = wp.main(str(bundle), str(shards), steps=25)
    assert (result["train"], result["val"]) == (6 * 20, 2 * 20)
    assert math.isfinite(result["loss_after"])
    assert result["loss_after"] < 0.5 * result["loss_before"]
    assert result["ade_after"] < result["ade_before"]
    out = capsys.readouterr().out
    assert "before: loss" in out and "after 25 steps: loss" in out


def test_example_uses_plain_timm_for_the_backbone():
    """Only the shard reader comes from ssltk; the bundle loads through timm's local-dir."""
    tree = ast.parse(EXAMPLE.read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in modules if m and m.startswith("ssltk")} == {"ssltk.data.shards"}
    assert 'f"local-dir:{bundle}", pretrained=not random_init' in EXAMPLE.read_text()


@pytest.mark.slow
def test_script_runs_from_the_command_line(data_and_bundle):
    import subprocess

    shards, bundle = data_and_bundle
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), str(bundle), str(shards), "--steps", "2", "--batch-size", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "after 2 steps: loss" in proc.stdout


def test_label_fraction_keeps_held_out_episodes_fixed(wp):
    names = [f"ep{i:02d}" for i in range(40)]
    full_train, val = wp.split_episodes(names, 1.0)
    assert val == names[30:] and full_train == names[:30]
    for seed in (0, 1):
        train, val_f = wp.split_episodes(names, 0.1, seed)
        assert val_f == val  # the same held-out episodes whatever the fraction
        assert len(train) == 3 and set(train) <= set(full_train)
    assert wp.split_episodes(names, 0.1, 0)[0] != wp.split_episodes(names, 0.1, 1)[0]
    assert len(wp.split_episodes(names, 0.001)[0]) == 1  # at least one episode keeps its labels
    with pytest.raises(SystemExit, match="label fraction"):
        wp.split_episodes(names, 0.0)


def test_fewer_labels_means_fewer_training_frames(wp, data_and_bundle):
    shards, bundle = data_and_bundle
    full = wp.main(str(bundle), str(shards), steps=1)
    part = wp.main(str(bundle), str(shards), steps=1, label_fraction=0.2)
    assert (full["train_episodes"], part["train_episodes"]) == (6, 2)
    assert part["train"] == 2 * 20 and part["val"] == full["val"] == 2 * 20
    assert sorted(part["ade_horizons"]) == [0.5, 1.0, 2.0]
    # The ADE is the mean of the per-horizon errors (same number of frames at each horizon).
    assert part["ade_after"] == pytest.approx(sum(part["ade_horizons"].values()) / 3, rel=1e-5)


def test_random_init_column_uses_the_bundle_architecture_with_new_weights(wp, data_and_bundle):
    shards, bundle = data_and_bundle
    trained = wp.main(str(bundle), str(shards), steps=0)
    rand = wp.main(str(bundle), str(shards), steps=0, random_init=True, seed=1)
    assert rand["val"] == trained["val"] and rand["loss_before"] != trained["loss_before"]


def test_curve_has_every_model_fraction_and_seed(wp, data_and_bundle):
    shards, bundle = data_and_bundle
    table = wp.curve({"mine": str(bundle)}, str(shards), fractions=(0.5, 1.0), seeds=(0, 1),
                     random_init=str(bundle), steps=2)
    assert list(table) == ["mine", "random init"]
    for by_fraction in table.values():
        assert list(by_fraction) == [0.5, 1.0]
        assert all(len(v) == 2 and all(math.isfinite(x) for x in v) for cell in by_fraction.values() for v in cell.values())
    md = wp.markdown(table)
    assert md.splitlines()[0] == "| model | labels | ADE +0.5 s | ADE +1 s | ADE +2 s |"
    assert "| mine | 50% |" in md and "| random init | 100% |" in md and len(md.splitlines()) == 2 + 4


def test_two_frame_examples_stack_the_previous_and_the_current_frame(wp, data_and_bundle):
    shards, _ = data_and_bundle
    episodes, _ = wp.read_episodes(str(shards), None)
    cfg = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}
    one, y1 = wp.build_examples(episodes, ["ep00"], cfg)
    two, y2 = wp.build_examples(episodes, ["ep00"], cfg, frames=2)
    assert two.shape == (len(one) - 1, 2, 3, 32, 32)  # frame 0 has no t - 1
    torch.testing.assert_close(two[:, 1], one[1:])  # slot 1 is frame t
    torch.testing.assert_close(two[:, 0], one[:-1])  # slot 0 is frame t - 1
    torch.testing.assert_close(y2, y1[1:])


def test_two_frame_model_feeds_the_head_now_before_and_the_change(wp):
    from timm import create_model

    torch.manual_seed(0)
    backbone = create_model("resnet18", num_classes=0)
    model = wp.WaypointModel(backbone, horizons=3, scale=2.0, frames=2).eval()
    assert model.head[0].in_features == 3 * backbone.num_features
    x = torch.randn(4, 2, 3, 32, 32)
    with torch.no_grad():
        f_prev, f_now = backbone(x[:, 0]), backbone(x[:, 1])
        want = model.head(torch.cat([f_now, f_prev, f_now - f_prev], 1)).view(4, 3, 2)
        torch.testing.assert_close(model(x), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(SystemExit, match="frames must be 1 or 2"):
        wp.WaypointModel(backbone, horizons=3, scale=1.0, frames=3)


def test_two_frame_finetune_runs_and_lowers_the_loss(wp, data_and_bundle):
    shards, bundle = data_and_bundle
    result = wp.main(str(bundle), str(shards), steps=25, frames=2)
    assert (result["train"], result["val"]) == (6 * 19, 2 * 19)
    assert result["loss_after"] < 0.5 * result["loss_before"]
