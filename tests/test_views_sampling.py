"""SegmentSampler: which timesteps and cameras a sample uses, checked without any IO."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from ssltk.data.shards.format import SegmentMeta
from ssltk.data.stream.sampling import SegmentSampler, check_plan_fits, frame_interval
from ssltk.errors import UnknownNameError, UsageError
from ssltk.views import DeltaRange, ViewPlan, ViewRequest


def meta(length=10, fps=10.0, cameras=("front",), missing=None, timestamps=None, start=0, ego=None):
    ts = timestamps if timestamps is not None else [(start + i) / fps for i in range(length)]
    return SegmentMeta(
        episode="ep0000",
        start=start,
        frames=list(range(start, start + length)),
        timestamps=list(ts),
        cameras=list(cameras),
        image_size=[8, 8],
        missing=dict(missing or {}),
        ego=dict(ego or {}),
        fps=fps,
    )


def plan_of(*deltas, cameras="anchor", aug=False, data_cameras=("front",)):
    req = ViewRequest(cameras=cameras, augmented_copy=aug, deltas=tuple(DeltaRange.parse(d) for d in deltas))
    return ViewPlan.build({"o": req}, list(data_cameras))


def sample_for(m: SegmentMeta, drop_fields=()):
    """A raw sample dict whose image bytes name their (timestep, camera)."""
    out = {"__key__": f"{m.episode}/s{m.start:06d}", "__url__": "mem"}
    for i in range(m.length):
        for cam in m.cameras:
            if m.has_frame(i, cam) and (i, cam) not in drop_fields:
                out[f"f{i:03d}.{cam}.jpg"] = f"{i}:{cam}".encode()
    return out


def draws(sampler, m, n=3000, seed=0):
    rng = random.Random(seed)
    return [sampler.draw(m, rng) for _ in range(n)]


def test_per_frame_plan_draws_anchor_uniformly():
    s = SegmentSampler(plan_of())
    got = Counter(d[0] for d in draws(s, meta(length=6)))
    assert set(got) == set(range(6))
    assert min(got.values()) > 3000 / 6 * 0.8


def test_fixed_delta_frames_partner_is_exact_and_anchor_fits():
    s = SegmentSampler(plan_of(3))
    out = draws(s, meta(length=8))
    assert all(p == t + 3 for t, p in out)
    anchors = Counter(t for t, _ in out)
    assert set(anchors) == set(range(5))  # 0..L-1-Δt, all of them
    assert min(anchors.values()) > 3000 / 5 * 0.8


def test_delta_range_frames_is_uniform_over_the_range():
    s = SegmentSampler(plan_of("2-5"))
    offsets = Counter(p - t for t, p in draws(s, meta(length=12)))
    assert set(offsets) == {2, 3, 4, 5}
    assert min(offsets.values()) > 3000 / 4 * 0.85  # Δt first, then anchor: no bias to short Δt


@pytest.mark.parametrize("fps", [10.0, 30.0, 7.0])
def test_delta_range_seconds_uses_timestamps(fps):
    s = SegmentSampler(plan_of("0.2s-0.6s"))
    m = meta(length=int(fps) + 2, fps=fps)
    half = 0.5 / fps
    dts = []
    for t, p in draws(s, m, n=1000):
        assert p is not None and p > t
        dts.append(m.timestamps[p] - m.timestamps[t])
    assert min(dts) >= 0.2 - half - 1e-9 and max(dts) <= 0.6 + half + 1e-9
    assert max(dts) - min(dts) > 0.3  # spans the range, not one value


def test_fixed_seconds_rounds_to_the_nearest_frame():
    s = SegmentSampler(plan_of("0.5s"))
    m = meta(length=20, fps=15.0)  # 0.5 s = 7.5 frames: 7 or 8 frames (0.467 s / 0.533 s)
    offsets = {p - t for t, p in draws(s, m, n=400)}
    assert offsets <= {7, 8} and offsets


def test_seconds_gap_in_timestamps_marks_partner_invalid_never_replaced():
    # 1 s hole between timestep 4 and 5: nothing is 0.3 s after timesteps 2..4
    ts = [0.0, 0.1, 0.2, 0.3, 0.4, 1.4, 1.5, 1.6, 1.7, 1.8]
    s = SegmentSampler(plan_of("0.3s"))
    for t, p in draws(s, meta(timestamps=ts), n=500):
        assert p is not None and abs(ts[p] - ts[t] - 0.3) < 1e-6


def test_partner_beyond_short_segment_is_invalid():
    s = SegmentSampler(plan_of(4))
    m = meta(length=3)  # an episode's short last segment: Δt=4 cannot fit
    for t, p in draws(s, m, n=200):
        assert p is None and 0 <= t < 3
    assert {t for t, _ in draws(s, m, n=200)} == {0, 1, 2}


def test_clip_of_fixed_deltas_fits_every_partner():
    s = SegmentSampler(plan_of(1, 2, 4))
    out = draws(s, meta(length=6), n=500)
    assert all(row[1:] == [row[0] + 1, row[0] + 2, row[0] + 4] for row in out)
    assert {row[0] for row in out} == {0, 1}


def test_augmented_copy_shares_the_anchor_timestep():
    s = SegmentSampler(plan_of(2, aug=True))
    assert s.plan.slots == ["t", "t:aug", "t+2f"]
    assert all(row[0] == row[1] and row[2] == row[0] + 2 for row in draws(s, meta(), n=100))


def test_gather_keeps_only_needed_bytes_and_masks_missing():
    m = meta(length=6, cameras=("front", "left", "right"), missing={"left": [2]})
    plan = plan_of(2, aug=True, cameras=("front", "left"), data_cameras=("front", "left", "right"))
    view = SegmentSampler(plan).gather(m, sample_for(m), [0, 0, 2])
    assert view.refs == [[(0, "front"), (0, "left")], [(0, "front"), (0, "left")], [(2, "front"), None]]
    assert set(view.images) == {(0, "front"), (0, "left"), (2, "front")}  # t and t:aug share; 'right' never read
    assert view.images[(2, "front")] == b"2:front"
    assert view.frame_index == [0, 0, 2] and view.dt == pytest.approx([0.0, 0.0, 0.2])


def test_gather_invalid_slot_and_absent_camera_and_absent_field():
    m = meta(length=4, cameras=("front",))  # this segment has no 'left' camera at all
    plan = plan_of(3, cameras="all", data_cameras=("front", "left"))
    view = SegmentSampler(plan).gather(m, sample_for(m, drop_fields={(0, "front")}), [0, None], [(0, 0.0), (3, 0.3)])
    assert view.refs == [[None, None], [None, None]]  # field absent / camera absent / slot invalid
    assert view.images == {}
    # the invalid slot carries the intended partner (anchor + drawn Δt), finite
    assert view.frame_index == [0, 3]
    assert view.timestamp == pytest.approx([0.0, 0.3]) and view.dt == pytest.approx([0.0, 0.3])


def test_invalid_partner_carries_the_drawn_delta():
    s = SegmentSampler(plan_of("4-6", "0.5s"))
    m = meta(length=3, start=10)  # too short for either partner
    rng = random.Random(0)
    for _ in range(50):
        steps, offsets = s.draw_offsets(m, rng)
        assert steps[1:] == [None, None]
        view = s.gather(m, sample_for(m), steps, offsets)
        t0 = view.frame_index[0]
        assert 4 <= view.frame_index[1] - t0 <= 6 and view.dt[1] == pytest.approx((view.frame_index[1] - t0) * 0.1)
        assert view.frame_index[2] - t0 == 5 and view.dt[2] == pytest.approx(0.5)


def test_gather_ego_values_nan_for_unknown():
    m = meta(length=3, ego={"speed": [1.0, None, 3.0]})
    s = SegmentSampler(plan_of(2), ego_fields=["speed", "yaw_rate"])
    view = s.gather(m, sample_for(m), [0, 2])
    assert view.ego["speed"] == [1.0, 3.0]
    assert all(np.isnan(v) for v in view.ego["yaw_rate"])
    view = s.gather(m, sample_for(m), [1, None])
    assert all(np.isnan(v) for v in view.ego["speed"])


def test_expand_gives_k_samples_deterministically():
    m = meta(length=10)
    s = SegmentSampler(plan_of("1-4"))
    a = s.expand(m, sample_for(m), 5, random.Random(3))
    b = s.expand(m, sample_for(m), 5, random.Random(3))
    assert len(a) == 5 and [v.frame_index for v in a] == [v.frame_index for v in b]


def test_check_plan_fits_unknown_camera_suggests():
    plan = ViewPlan(["t"], [None], ["frnt"])
    with pytest.raises(UnknownNameError, match="unknown camera 'frnt'; did you mean 'front'"):
        check_plan_fits(plan, meta(cameras=("front", "left")))


def test_check_plan_fits_delta_too_long_frames_and_seconds():
    with pytest.raises(UsageError, match=r"Δt t\+2..9f needs segments of at least 10 timesteps, but the data's segments have 8"):
        check_plan_fits(plan_of("2-9"), meta(length=8))
    check_plan_fits(plan_of("2-7"), meta(length=8))
    with pytest.raises(UsageError, match=r"= 15 timesteps at 30 fps"):
        check_plan_fits(plan_of("0.5s"), meta(length=8, fps=30.0))
    check_plan_fits(plan_of("0.5s"), meta(length=8, fps=10.0))
    # the manifest's nominal segment length wins over a short first segment
    check_plan_fits(plan_of(5), meta(length=3), segment_length=8)


def test_frame_interval_from_timestamps_or_fps():
    assert frame_interval(meta(length=5, fps=20.0)) == pytest.approx(0.05)
    assert frame_interval(meta(length=1, fps=4.0)) == pytest.approx(0.25)
    # the median of the positive steps: an odd gap and a repeated timestamp do not move it
    assert frame_interval(meta(length=6, timestamps=[0.0, 0.1, 0.2, 0.2, 0.3, 0.9])) == pytest.approx(0.1)
    assert frame_interval(meta(length=5, timestamps=[0.0, 0.1, 0.3, 0.4, 0.6])) == pytest.approx(0.15)
    # a missing (null) timestamp is skipped, as NaN was before
    assert frame_interval(meta(length=4, timestamps=[0.0, None, 0.2, 0.3])) == pytest.approx(0.1)
