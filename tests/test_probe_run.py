"""run_probe end to end on tiny shards and a tiny bundle: columns, observability, skips, outputs, bundle safety."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from probe_helpers import write_probe_shards, write_tiny_bundle

from ssltk.errors import UnknownNameError, UsageError
from ssltk.probe import ProbeOptions, run_probe
from ssltk.probe.models import load_bundle, random_init


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    write_probe_shards(d / "shards", episodes=6, length=30, size=24)
    write_tiny_bundle(d / "bundle", seed=123)
    return d


@pytest.fixture(scope="module")
def result(probe_data):
    return run_probe(probe_data / "bundle", probe_data / "shards", device="cpu", out=probe_data / "out")


def rows(result):
    return {(r["probe"], r["metric"]): r for r in result["rows"]}


def test_every_probe_family_has_rows_for_every_column(result):
    assert result["columns"] == ["bundle", "random_init", "raw_pixels", "ego_status"]
    assert result["baselines"] == ["random_init", "raw_pixels", "ego_status"]
    keys = rows(result)
    for key in [("waypoints", "ADE (m)"), ("dx@1s", "R²"), ("speed", "R²"), ("yaw_rate", "R²"),
                ("temporal Δt=1", "R@1"), ("temporal Δt=1", "R@10"), ("temporal Δt=5", "mean rank"),
                ("cross-camera front→left", "R@1"), ("cross-camera front→left", "R@5")]:
        assert key in keys, key
        assert all(len(v) == 2 for c, v in keys[key]["per_seed"].items())
    assert result["skipped"] == []


def test_ego_status_is_scored_on_motion_rows_only(result):
    keys = rows(result)
    for key in [("waypoints", "ADE (m)"), ("dx@1s", "R²"), ("dy@2s", "R²")]:
        assert keys[key]["summary"]["ego_status"]["mean"] is not None, key
    for key in [("speed", "R²"), ("temporal Δt=1", "R@1"), ("cross-camera front→left", "R@1")]:
        assert keys[key]["summary"]["ego_status"]["mean"] is None, key
    # the helper's ego motion is an arc at constant yaw rate: speed alone predicts dx well
    assert keys[("dx@1s", "R²")]["summary"]["ego_status"]["mean"] > 0.9


def test_verdicts_compare_the_bundle_with_its_best_baseline(result):
    for row in result["rows"]:
        if row["best_baseline"] is None or row["summary"]["bundle"]["mean"] is None:
            continue
        sign = 1 if row["higher_is_better"] else -1
        best = row["summary"][row["best_baseline"]]
        assert row["delta_vs_best"] == pytest.approx(sign * (row["summary"]["bundle"]["mean"] - best["mean"]))
        assert row["verdict"] in ("beats", "within", "behind")


def test_temporal_retrieval_uses_each_seeds_probe_test_episodes(result):
    n_test = [len(s["test"]) for s in result["splits"]]
    note = rows(result)[("temporal Δt=1", "mean rank")]["note"]
    # candidates are the probe-test episodes' frames, not every kept frame
    assert int(note.split("~")[1].split()[0]) < result["data"]["anchor_frames"] * max(n_test) / result["data"]["episodes_used"] + 1


def test_frames_are_encoded_once_despite_overlapping_segments(result):
    # 6 episodes x 30 timesteps of the anchor camera, plus the pooled second-camera frames
    assert result["data"]["anchor_frames"] == 180
    assert result["timing_s"]["frames_encoded_per_model"] == 180 + result["data"]["cross_camera_frames"]["left"]


def test_what_the_frames_show_is_predicted_and_what_they_do_not_is_not_observable(result):
    r = rows(result)
    assert r[("speed", "R²")]["summary"]["raw_pixels"]["mean"] > 0.95  # brightness encodes speed
    assert r[("dx@0.5s", "R²")]["summary"]["raw_pixels"]["mean"] > 0.9  # distance ahead = speed x time
    lane = r[("lane_offset", "R²")]  # independent noise
    assert lane["not_observable"] and "not observable" in lane["note"]
    assert not r[("speed", "R²")]["not_observable"]


def test_splits_are_by_episode_and_differ_by_seed(result):
    for split in result["splits"]:
        assert not set(split["train"]) & set(split["test"])
        assert len(split["train"]) + len(split["test"]) == 6
    assert [s["seed"] for s in result["splits"]] == [0, 1]


def test_outputs_are_written(result, probe_data):
    data = json.loads((probe_data / "out" / "probe.json").read_text())
    assert data["format"] == "ssltk-probe" and data["rows"] == json.loads(json.dumps(result["rows"]))
    assert (probe_data / "out" / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundle_features_come_from_the_bundle_weights(probe_data):
    from safetensors.torch import load_file

    model, info = load_bundle(probe_data / "bundle")
    saved = load_file(str(probe_data / "bundle" / "model.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert info.input_size == (24, 24) and not model.training


def test_random_init_is_the_same_architecture_and_seeded(probe_data):
    model, info = load_bundle(probe_data / "bundle")
    a, b, c = random_init(info, 0), random_init(info, 0), random_init(info, 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == model.state_dict().keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_missing_fields_and_a_single_camera_skip_probes_with_notes(tmp_path, probe_data):
    write_probe_shards(tmp_path / "s", episodes=4, length=24, size=24, cameras=("front",), ego_fields=("x", "y", "lane_offset"))
    res = run_probe(probe_data / "bundle", tmp_path / "s", device="cpu", seeds=(0,))
    skipped = {s["probe"]: s["reason"] for s in res["skipped"]}
    assert "one camera" in skipped["cross-camera"]
    assert "heading" in skipped["waypoints"] and "no ego speed" in skipped["speed"]
    names = {r["probe"] for r in res["rows"]}
    assert "lane_offset" in names and "speed" not in names and not any(n.startswith("cross") for n in names)


def test_write_into_bundle_keeps_the_bundle_verifiable(tmp_path, probe_data):
    from ssltk.bundle import verify_bundle

    bundle = write_tiny_bundle(tmp_path / "b", seed=5)
    res = run_probe(bundle, probe_data / "shards", device="cpu", seeds=(0,), write_into_bundle=True, max_frames=60)
    stored = json.loads((bundle / "probe.json").read_text())
    manifest = json.loads((bundle / "ssltk.json").read_text())
    assert stored["bundle"]["weights_sha256"] == manifest["files"]["model.safetensors"]["sha256"]
    assert res["written"]["bundle"] == str(bundle / "probe.json")
    assert verify_bundle(bundle) == []


def test_compare_adds_a_column(tmp_path, probe_data):
    other = write_tiny_bundle(tmp_path / "other", seed=9)
    res = run_probe(probe_data / "bundle", probe_data / "shards", compare=[other], device="cpu", seeds=(0,), max_frames=60)
    assert res["columns"] == ["bundle", "random_init", "raw_pixels", "ego_status", "compare:other"]
    assert all("compare:other" in r["summary"] for r in res["rows"])


def test_both_input_variants_give_labelled_rows(probe_data):
    res = run_probe(probe_data / "bundle", probe_data / "shards", device="cpu", seeds=(0,), max_frames=60, inputs=("t", "t,t-1"))
    names = {r["probe"] for r in res["rows"]}
    assert {"speed", "speed [t]", "waypoints", "waypoints [t]"} <= names


def test_bad_inputs_are_usage_errors(tmp_path, probe_data):
    with pytest.raises(UsageError, match="not a bundle"):
        run_probe(tmp_path, probe_data / "shards")
    with pytest.raises(UnknownNameError, match="front"):
        run_probe(probe_data / "bundle", probe_data / "shards", camera="fron")
    with pytest.raises(UnknownNameError):
        run_probe(probe_data / "bundle", probe_data / "shards", inputs=("t-1",))
    with pytest.raises(UsageError, match="does not exist"):
        run_probe(probe_data / "bundle", tmp_path / "nothing-here")


def test_no_data_without_builtin_synthetic_data_asks_for_data(probe_data, monkeypatch):
    monkeypatch.setitem(sys.modules, "ssltk.data.synth.cache", None)  # as if the module did not exist
    with pytest.raises(UsageError, match="--data"):
        run_probe(probe_data / "bundle")


def test_defaults_are_the_documented_scale():
    opts = ProbeOptions()
    assert opts.seeds == (0, 1) and opts.max_frames == 2304 and opts.inputs == ("t,t-1",)
    assert opts.readout == "gap" and opts.run_length == 12 and opts.fit_every == 2
    assert opts.horizons == (0.5, 1.0, 2.0) and opts.dts == (1, 5, 10)
    assert np.isclose(opts.test_fraction, 0.35)


def test_unavailable_cuda_is_a_usage_error(monkeypatch):
    from ssltk.probe.models import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_grid_readout_pools_the_last_feature_map_to_2x2(probe_data):
    from ssltk.probe.features import ModelExtractor

    net, info = load_bundle(probe_data / "bundle")
    frames = torch.randint(0, 256, (3, 3, *info.input_size), dtype=torch.uint8)
    kw = dict(size=info.input_size, mean=info.mean, std=info.std)
    grid = ModelExtractor("g", net, readout="grid", **kw)(frames)
    gap = ModelExtractor("p", net, readout="gap", **kw)(frames)
    assert grid.shape == (3, 4 * gap.shape[1])
    x = (frames.float() - torch.tensor(info.mean).view(1, 3, 1, 1) * 255) / (torch.tensor(info.std).view(1, 3, 1, 1) * 255)
    with torch.inference_mode():
        ref = torch.nn.functional.adaptive_avg_pool2d(net.forward_features(x), 2).flatten(1)
    np.testing.assert_allclose(grid, ref.numpy(), rtol=1e-4, atol=1e-5)
    # the mean of the four cells is the pooled output
    np.testing.assert_allclose(grid.reshape(3, -1, 4).mean(-1), gap, rtol=1e-4, atol=1e-5)


def test_readout_is_recorded_and_unknown_readouts_suggest_close_ones(probe_data):
    res = run_probe(probe_data / "bundle", probe_data / "shards", device="cpu", seeds=(0,), max_frames=60, readout="grid")
    assert res["readout"] == "grid" and res["options"]["readout"] == "grid"
    with pytest.raises(UnknownNameError, match="grid"):
        run_probe(probe_data / "bundle", probe_data / "shards", readout="gird")
