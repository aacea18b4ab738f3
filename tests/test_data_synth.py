"""Synthetic episodes: determinism, ground truth, observability, dropped frames, the default-set cache, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.data.shards.format import EGO_FIELDS, resolve_shards, segment_starts
from ssltk.data.shards.reader import iter_segments
from ssltk.data.synth import cache
from ssltk.data.synth import episodes as synth
from ssltk.data.synth.render import Renderer
from ssltk.data.synth.world import World
from ssltk.errors import UnknownNameError, UsageError
from ssltk.plugins import get_plugin_manager

TINY = dict(episodes=2, length=12, image_size=32, cameras=["front", "rear"], segment_length=8, overlap=4)


def _segments(out):
    return [(meta, images) for _, meta, images in iter_segments(resolve_shards(out))]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- determinism and layout


def test_same_seed_gives_byte_identical_shards(tmp_path):
    a = synth.synth_episodes(tmp_path / "a", **TINY, shard_size=3)
    b = synth.synth_episodes(tmp_path / "b", **TINY, shard_size=3)
    assert len(a["shards"]) > 1
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    c = synth.synth_episodes(tmp_path / "c", **{**TINY, "seed": 1}, shard_size=3)
    assert [s["sha256"] for s in c["shards"]] != [s["sha256"] for s in a["shards"]]


@pytest.mark.slow
def test_worker_processes_do_not_change_the_bytes(tmp_path):
    synth.synth_episodes(tmp_path / "one", **{**TINY, "episodes": 3})
    synth.synth_episodes(tmp_path / "two", **{**TINY, "episodes": 3}, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_episode_names_segments_and_metadata(tmp_path):
    manifest = synth.synth_episodes(tmp_path / "s", **{**TINY, "seed": 7})
    segs = _segments(tmp_path / "s")
    starts = segment_starts(12, 8, 4)
    assert [(m.episode, m.start) for m, _ in segs] == [(f"synth-s7-e{i:05d}", s) for i in range(2) for s in starts]
    meta, images = segs[0]
    assert meta.cameras == ["front", "rear"] and meta.image_size == [32, 32] and meta.fps == 10.0
    assert meta.frames == list(range(8)) and meta.timestamps == pytest.approx([t / 10 for t in range(8)])
    assert meta.episode_length == 12 and set(EGO_FIELDS) <= set(meta.ego)
    assert set(images) == {(i, c) for i in range(8) for c in ("front", "rear")}
    assert simplejpeg.decode_jpeg(images[(0, "front")]).shape == (32, 32, 3)
    assert manifest["synth"]["seed"] == 7 and manifest["generator_version"] == synth.GENERATOR_VERSION


def test_non_square_images(tmp_path):
    synth.synth_episodes(tmp_path / "s", **{**TINY, "episodes": 1, "image_size": (24, 40)})
    meta, images = _segments(tmp_path / "s")[0]
    assert meta.image_size == [24, 40]
    assert simplejpeg.decode_jpeg(images[(3, "rear")]).shape == (24, 40, 3)


@pytest.mark.parametrize("n,length,overlap", [(n, L, o) for n in (1, 5, 16, 17, 23, 40) for L in (1, 4, 8) for o in range(L)])
def test_segments_reach_every_pair_within_the_overlap(n, length, overlap):
    starts = segment_starts(n, length, overlap)
    spans = [(s, min(s + length, n)) for s in starts]
    assert spans[0][0] == 0 and spans[-1][1] == n and all(b - a == min(n, length) for a, b in spans)
    for a in range(n):
        for b in range(a, min(n, a + overlap + 1)):
            assert any(s <= a and b < e for s, e in spans), (a, b)


# ---------------------------------------------------------------- ground truth


@pytest.mark.parametrize("seed", range(4))
def test_ego_ground_truth_is_consistent(seed):
    w = World(np.random.SeedSequence([seed, 0]), 50, 10.0)
    e, dt = w.ego, 0.1
    # x, y are the trapezoid integral of speed along heading
    vx, vy = e["speed"] * np.cos(e["heading"]), e["speed"] * np.sin(e["heading"])
    assert np.abs(np.diff(e["x"]) - 0.5 * (vx[1:] + vx[:-1]) * dt).max() < 0.02
    assert np.abs(np.diff(e["y"]) - 0.5 * (vy[1:] + vy[:-1]) * dt).max() < 0.02
    # yaw rate and acceleration are the derivatives of heading and speed
    assert np.abs(np.gradient(e["heading"], dt)[1:-1] - e["yaw_rate"][1:-1]).max() < 0.12
    assert np.abs(np.gradient(e["speed"], dt)[1:-1] - e["accel"][1:-1]).max() < 0.5
    assert np.allclose(np.tan(e["steering"]), 2.8 * e["yaw_rate"] / np.maximum(e["speed"], 1.0))
    assert np.all(np.abs(e["lane_offset"]) <= w.road.lane_width / 2 + 1e-9)
    assert np.all((e["speed"] > 2.0) & (e["speed"] < 27.0))


def test_speed_and_curvature_vary_within_and_across_episodes():
    worlds = [World(np.random.SeedSequence([s, 0]), 64, 10.0) for s in range(6)]
    speeds = np.concatenate([w.ego["speed"] for w in worlds])
    assert speeds.max() - speeds.min() > 10.0
    assert np.median([np.ptp(w.ego["speed"]) for w in worlds]) > 1.5
    assert max(np.abs(w.ego["yaw_rate"]).max() for w in worlds) > 0.1
    assert np.median([np.ptp(w.road.curvature_at(w.ego["s"])) for w in worlds]) > 1e-3


def test_metadata_carries_the_rounded_ground_truth(tmp_path):
    synth.synth_episodes(tmp_path / "s", **{**TINY, "episodes": 1})
    w, _ = synth.build_world(synth.synth_params(**{**TINY, "episodes": 1}), 0)
    for meta, _ in _segments(tmp_path / "s"):
        for name in EGO_FIELDS:
            expected = w.ego[name][meta.start : meta.start + meta.length]
            assert np.allclose(meta.ego[name], expected, atol=1e-6), name


def test_roadside_objects_are_irregularly_spaced():
    """Irregular gaps make speed readable (periodic spacing aliases at 1.5-3 m per frame)."""
    for seed in range(3):
        w = World(np.random.SeedSequence([seed, 0]), 64, 10.0)
        s = w.props["s"]
        cx, cy = w.road.point(s, 0.0)
        th = w.road.heading_at(s)
        d = -(w.props["pos"][:, 0] - cx) * np.sin(th) + (w.props["pos"][:, 1] - cy) * np.cos(th)
        for side in (d > 0, d < 0):
            gaps = np.diff(np.unique(np.round(s[side], 3)))
            assert len(gaps) > 10 and gaps.std() / gaps.mean() > 0.4  # periodic spacing would give ~0


# ---------------------------------------------------------------- observability


def _render(world, t, cams=("front",), size=64):
    return [img.astype(np.float32) for img in Renderer(cams, size, size).render(world, t)]


def test_consecutive_frames_differ_in_every_camera():
    w = World(np.random.SeedSequence([3, 0]), 20, 10.0)
    cams = ("front", "front_left", "front_right", "rear")
    for t in (0, 9):
        for a, b in zip(_render(w, t, cams), _render(w, t + 1, cams)):
            assert np.abs(a - b).mean() > 1.0


def test_all_cameras_see_one_world():
    """A car placed 8 m ahead shows in the front camera and not in the rear one."""
    w = World(np.random.SeedSequence([5, 0]), 4, 10.0)
    front, rear = _render(w, 0, ("front", "rear"))
    w.cars["s0"] = np.array([w.ego["s"][0] + 8.0])
    w.cars["d"] = np.array([w.ego["d"][0]])
    for key in ("v", "size", "big", "colour"):
        w.cars[key] = w.cars[key][:1]
    w.cars["v"][:] = 0.0
    w.cars["colour"][:] = (255.0, 0.0, 255.0)
    front2, rear2 = _render(w, 0, ("front", "rear"))
    assert np.abs(front2 - front).mean() > 3 * max(np.abs(rear2 - rear).mean(), 0.1)


def test_front_view_shows_the_lateral_position():
    """Moving the ego 1 m to the left shifts the road (and its lane lines) to the right in the front image."""
    w = World(np.random.SeedSequence([1, 0]), 4, 10.0)
    base = _render(w, 0, size=96)[0]
    x, y = w.road.point(w.ego["s"][0], w.ego["d"][0] + 1.0)
    w.ego["x"][0], w.ego["y"][0] = x, y
    moved = _render(w, 0, size=96)[0]
    a, b = base.mean(axis=2), moved.mean(axis=2)
    shifts = []
    for row in range(66, 96):  # the road just ahead of the car
        err = {k: np.abs(a[row, 30:66] - b[row, 30 + k : 66 + k]).mean() for k in range(-30, 31)}
        shifts.append(min(err, key=err.get))  # b(x + k) = a(x): content moved by k pixels
    assert np.median(shifts) > 3  # moved right, as it must when the car moves left


# ---------------------------------------------------------------- dropped frames


def test_dropped_frames_are_listed_and_not_stored(tmp_path):
    synth.synth_episodes(tmp_path / "s", **{**TINY, "length": 24}, drop_rate=0.3)
    seen: dict[tuple[str, int, str], bool] = {}
    drops = total = 0
    for meta, images in _segments(tmp_path / "s"):
        for i in range(meta.length):
            for cam in meta.cameras:
                present = (i, cam) in images
                assert present == (i not in meta.missing.get(cam, ())), (meta.episode, meta.start + i, cam)
                key = (meta.episode, meta.start + i, cam)
                assert seen.setdefault(key, present) == present  # overlapping segments agree
    for present in seen.values():
        drops += not present
        total += 1
    assert 0.15 < drops / total < 0.45


def test_drop_rate_does_not_change_the_world(tmp_path):
    synth.synth_episodes(tmp_path / "a", **TINY)
    synth.synth_episodes(tmp_path / "b", **TINY, drop_rate=0.5)
    for (ma, ia), (mb, ib) in zip(_segments(tmp_path / "a"), _segments(tmp_path / "b")):
        assert ma.ego == mb.ego
        assert all(ia[k] == v for k, v in ib.items())


# ---------------------------------------------------------------- validation and CLI


def test_bad_options_say_what_to_do():
    with pytest.raises(UnknownNameError, match="did you mean 'front'"):
        synth.synth_params(cameras=["frnt"])
    for kwargs in ({"overlap": 16}, {"drop_rate": 1.0}, {"episodes": 0}, {"image_size": 8}, {"cameras": ["rear", "rear"]}):
        with pytest.raises(UsageError):
            synth.synth_params(**kwargs)


def test_cli_synth_writes_shards_and_refuses_to_overwrite(tmp_path):
    app = build_app(get_plugin_manager())
    args = ["data", "synth", "--out", str(tmp_path / "s"), "--episodes", "1", "--length", "6", "--image-size", "40x24",
            "--cameras", "front,rear", "--segment-length", "4", "--overlap", "2"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 1 episodes" in result.stdout
    meta, _ = _segments(tmp_path / "s")[0]
    assert meta.image_size == [24, 40] and meta.cameras == ["front", "rear"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "already has shards" in again.output and "Traceback" not in again.output
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cli_synth_unknown_camera_is_one_line(tmp_path):
    result = CliRunner().invoke(build_app(get_plugin_manager()), ["data", "synth", "--out", str(tmp_path), "--cameras", "front,rearr"])
    assert result.exit_code == 2
    assert "unknown camera 'rearr'" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- the cached default set


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLTK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


SMALL = dict(episodes=1, length=4, image_size=32, cameras=["front"], segment_length=4, overlap=0)


def test_default_set_is_generated_once_and_reused(cache_dir, monkeypatch):
    path = cache.default_synthetic_shards("train", verbose=False, **SMALL)
    assert path.parent == cache_dir / "synth" and (path / "manifest.json").is_file()
    stamp = json.loads((path / cache.STAMP).read_text())
    assert stamp["params"]["episodes"] == 1 and stamp["generator_version"] == synth.GENERATOR_VERSION

    def boom(*a, **k):
        raise AssertionError("regenerated")

    monkeypatch.setattr(synth, "synth_episodes", boom)
    assert cache.default_synthetic_shards("train", verbose=False, **SMALL) == path
    assert [p.name for p in (cache_dir / "synth").iterdir()] == [path.name]  # no temporary folder left


def test_default_set_is_regenerated_for_a_new_generator_version(cache_dir, monkeypatch):
    old = cache.default_synthetic_shards("train", verbose=False, **SMALL)
    monkeypatch.setattr(synth, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
    new = cache.default_synthetic_shards("train", verbose=False, **SMALL)
    assert new != old and (new / "manifest.json").is_file()
    assert not old.exists()  # the outdated set is pruned


def test_probe_split_holds_other_episodes(cache_dir):
    train = cache.default_synthetic_shards("train", verbose=False, **SMALL)
    probe = cache.default_synthetic_shards("probe", verbose=False, **SMALL)
    names = lambda p: {m.episode for m, _ in _segments(p)}  # noqa: E731
    assert names(train).isdisjoint(names(probe))
    with pytest.raises(UnknownNameError, match="split"):
        cache.default_synthetic_shards("val", verbose=False)


def test_failed_generation_leaves_nothing(cache_dir, monkeypatch):
    def half(out, **kwargs):
        Path(out).mkdir(parents=True)
        (Path(out) / "shard-000000.tar").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "synth_episodes", half)
    with pytest.raises(KeyboardInterrupt):
        cache.default_synthetic_shards("train", verbose=False, **SMALL)
    assert list((cache_dir / "synth").iterdir()) == []


def test_losing_the_race_keeps_the_winners_copy(tmp_path):
    final, tmp = tmp_path / "final", tmp_path / "tmp"
    for folder, tag in ((final, b"winner"), (tmp, b"loser")):
        folder.mkdir()
        (folder / "manifest.json").write_bytes(tag)
        (folder / cache.STAMP).write_text("{}")
    cache._publish(tmp, final)
    assert (final / "manifest.json").read_bytes() == b"winner"


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SSLTK_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.cache_root() == tmp_path / "ssltk"
    monkeypatch.setenv("SSLTK_CACHE", str(tmp_path / "x"))
    assert cache.cache_root() == tmp_path / "x"
