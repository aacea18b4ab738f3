"""Probe frame table: overlapping segments deduplicated, frame caps, decoding, split by episode."""

from __future__ import annotations

import numpy as np
import pytest
from probe_helpers import ego_tracks, render, write_probe_shards

from ssltk.data.shards import iter_segments, resolve_shards
from ssltk.errors import UsageError
from ssltk.probe.frames import choose_kept, load_frames, resize_uint8
from ssltk.probe.split import split_episodes
from ssltk.testing.shards import identify, write_tiny_shards


@pytest.fixture(scope="module")
def overlapping(tmp_path_factory):
    d = tmp_path_factory.mktemp("overlap")
    write_probe_shards(d, episodes=3, length=30, segment_length=12, overlap=5, size=16)
    return load_frames(iter_segments(resolve_shards(d)))


def test_overlapping_segments_give_each_frame_once(overlapping):
    table = overlapping
    assert sorted(table.episodes) == ["ep000", "ep001", "ep002"]
    assert len(table.images) == 3 * 30 * 2  # episodes x timesteps x cameras, no duplicates
    for name, ep in table.episodes.items():
        assert list(ep.steps) == list(range(30))
        np.testing.assert_allclose(ep.timestamps, np.arange(30) / 10.0)
    truth = ego_tracks(1, 30, 10.0)
    for field in ("speed", "x", "heading", "lane_offset"):
        np.testing.assert_allclose(table.episodes["ep001"].ego[field], truth[field])


def test_deduplicated_frames_are_the_right_images(tmp_path):
    write_tiny_shards(tmp_path, episodes=2, length=20, cameras=("front", "rear"), segment_length=8, overlap=3, image_size=32)
    table = load_frames(iter_segments(resolve_shards(tmp_path)))
    assert len(table.images) == 2 * 20 * 2
    keys = [("ep0001", 13, "rear"), ("ep0000", 7, "front"), ("ep0000", 19, "rear")]
    frames = table.decode(keys, (32, 32))
    assert [identify(f) for f in frames] == [(1, 13, 1), (0, 7, 0), (0, 19, 1)]


def test_decode_resizes_to_the_requested_size(overlapping):
    key = ("ep002", 4, "front")
    out = overlapping.decode([key], (8, 12), "bicubic")
    assert out.shape == (1, 3, 8, 12) and str(out.dtype) == "torch.uint8"
    native = overlapping.decode([key], (16, 16))[0]
    speed = overlapping.episodes["ep002"].ego["speed"][4]
    expected = render(2, 4, 0, speed, 16)
    assert np.abs(native.permute(1, 2, 0).numpy().astype(int) - expected.astype(int)).mean() < 12  # JPEG error only


def test_resize_area_matches_block_mean():
    img = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    import torch

    out = resize_uint8(torch.from_numpy(img), (2, 2), "area")
    assert out[0, 0, 0] == round(img[0, :2, :2].mean())


def test_choose_kept_without_cap_keeps_everything(overlapping):
    choose_kept(overlapping, 10_000, "front")
    assert {k: len(v) for k, v in overlapping.kept.items()} == {"ep000": 30, "ep001": 30, "ep002": 30}


def test_choose_kept_spreads_runs_over_every_episode(overlapping):
    choose_kept(overlapping, 60, "front", run_length=10)  # 6 runs of 10 over 3 episodes of 30
    assert {k: list(v) for k, v in overlapping.kept.items()} == {
        f"ep00{i}": list(range(10)) + list(range(15, 25)) for i in range(3)
    }
    assert len(overlapping.kept_keys("front")) == 60


def test_choose_kept_with_fewer_runs_than_episodes_spreads_them(overlapping):
    choose_kept(overlapping, 25, "front", run_length=10)  # 2 runs: first and last episode, from their start
    assert {k: list(v) for k, v in overlapping.kept.items()} == {"ep000": list(range(10)), "ep002": list(range(10))}


def test_choose_kept_rejects_too_short_runs(overlapping):
    with pytest.raises(UsageError, match="run length"):
        choose_kept(overlapping, 25, "front", run_length=1)


def test_split_is_by_episode_without_overlap():
    names = [f"ep{i}" for i in range(10)]
    train, test = split_episodes(names, seed=0)
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(names)
    assert len(test) == 4  # round(0.35 * 10)


def test_split_depends_on_the_seed_and_only_on_it():
    names = [f"ep{i}" for i in range(12)]
    assert split_episodes(names, 3) == split_episodes(list(reversed(names)), 3)
    assert len({tuple(split_episodes(names, s)[1]) for s in range(5)}) > 1


def test_split_keeps_one_episode_on_each_side():
    assert split_episodes(["a", "b"], 0, test_fraction=0.9) in ((["a"], ["b"]), (["b"], ["a"]))
    with pytest.raises(UsageError, match="at least 2 episodes"):
        split_episodes(["only"], 0)
