"""ViewPlan: the union of objectives' view requests, and DeltaRange parsing."""

from __future__ import annotations

import pytest

from ssltk.errors import UnknownNameError, UsageError
from ssltk.views import DeltaRange, ViewPlan, ViewRequest

CAMS = ["front", "front_left", "front_right", "rear"]


@pytest.mark.parametrize(
    "text, expect",
    [
        ("4", DeltaRange(4, 4)),
        (4, DeltaRange(4, 4)),
        ("2-10", DeltaRange(2, 10)),
        ("2..10", DeltaRange(2, 10)),
        ("3:7", DeltaRange(3, 7)),
        ([2, 5], DeltaRange(2, 5)),
        ("0.2s-1s", DeltaRange(0.2, 1.0, "seconds")),
        ("0.2s..1.5s", DeltaRange(0.2, 1.5, "seconds")),
        (".5s", DeltaRange(0.5, 0.5, "seconds")),
    ],
)
def test_delta_range_parse(text, expect):
    assert DeltaRange.parse(text) == expect


@pytest.mark.parametrize("text", ["", "abc", "10-2", "0", "1.5", "2-3.5", "-1"])
def test_delta_range_rejects_bad_text(text):
    with pytest.raises(UsageError):
        DeltaRange.parse(text)


def test_label_round_trips():
    for d in (DeltaRange(2, 10), DeltaRange(3, 3), DeltaRange(0.5, 1.0, "seconds")):
        assert d.label.startswith("t+")
        assert DeltaRange.parse(d.label[2:].replace("f", "")) == d


def test_union_dedups_slots_and_orders_cameras_like_the_data():
    d = DeltaRange(2, 10)
    plan = ViewPlan.build(
        {
            "per-frame": ViewRequest(augmented_copy=True),
            "temporal": ViewRequest(deltas=(d,)),
            "temporal-again": ViewRequest(deltas=(d,)),
            "multi-camera": ViewRequest(cameras="all"),
            "rear-only": ViewRequest(cameras=("rear", "front")),
        },
        CAMS,
    )
    assert plan.slots == ["t", "t:aug", "t+2..10f"]
    assert plan.cameras == CAMS
    assert plan.selections["per-frame"].slots == (0, 1)
    assert plan.selections["temporal"].slots == plan.selections["temporal-again"].slots == (0, 2)
    assert plan.selections["per-frame"].cameras == (0,)  # the anchor camera, front
    assert plan.selections["multi-camera"].cameras == (0, 1, 2, 3)
    assert plan.selections["rear-only"].cameras == (3, 0)  # the objective's own order


def test_only_requested_cameras_are_loaded():
    plan = ViewPlan.build({"a": ViewRequest()}, CAMS)
    assert plan.cameras == ["front"] and plan.slots == ["t"]


def test_anchor_camera_defaults_to_first_without_front_and_can_be_chosen():
    assert ViewPlan.build({"a": ViewRequest()}, ["cam_a", "cam_b"]).cameras == ["cam_a"]
    assert ViewPlan.build({"a": ViewRequest()}, CAMS, anchor_camera="rear").cameras == ["rear"]


def test_unknown_cameras_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="front_left"):
        ViewPlan.build({"a": ViewRequest(cameras=("front_lft",))}, CAMS)
    with pytest.raises(UnknownNameError, match="rear"):
        ViewPlan.build({"a": ViewRequest()}, CAMS, anchor_camera="raer")


def test_describe_is_plain_data():
    plan = ViewPlan.build({"a": ViewRequest(deltas=(DeltaRange(1, 1),))}, CAMS)
    assert plan.describe() == {"slots": ["t", "t+1f"], "cameras": ["front"], "objectives": {"a": {"slots": [0, 1], "cameras": [0]}}}
