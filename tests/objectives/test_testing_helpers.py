"""ssltk.testing: fake_batch follows the contract; check_objective catches broken objectives."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import ssltk
from ssltk import DeltaRange, LossOutput, Objective, ViewRequest
from ssltk.testing import check_objective, fake_batch, fake_batch_for
from ssltk.views import ViewPlan
from ssltk_builtins.temporal_infonce import TemporalInfoNCE


def test_fake_batch_structure():
    b = fake_batch(8, ("t", "t:aug", DeltaRange(2, 5), DeltaRange(0.5, 0.5, "seconds")), ("front", "left"),
                   episodes=3, episode_length=1000, fps=10.0, seed=1)
    assert ssltk.validate_batch(b) == (8, 4, 2)
    assert b["slots"] == ["t", "t:aug", "t+2..5f", "t+0.5s"]
    f = b["frame_index"]
    assert torch.equal(f[:, 0], f[:, 1])
    assert ((f[:, 2] - f[:, 0]) >= 2).all() and ((f[:, 2] - f[:, 0]) <= 5).all()
    assert ((f[:, 3] - f[:, 0]) == 5).all()
    assert (b["episode"][:, :1] == b["episode"]).all() and len(set(b["episode"][:, 0].tolist())) == 3
    assert torch.allclose(b["dt"][:, 3], torch.full((8,), 0.5))
    assert b["mask"].all()


def test_fake_batch_missing_frames_and_episode_ends():
    b = fake_batch(50, ("t", DeltaRange(5, 5)), ("front",), episode_length=10, missing=0.3, seed=2)
    ends = b["frame_index"][:, 1] >= 10
    assert ends.any() and not b["mask"][ends, 1, 0].any()
    assert 0 < (~b["mask"]).float().mean() < 0.9
    assert (b["frames"][~b["mask"]] == 0).all()


def test_fake_batch_for_uses_the_objectives_plan():
    obj = TemporalInfoNCE.from_options(8, camera="all", dt="3")
    b = fake_batch_for(obj, B=2, cameras=("front", "left"))
    assert b["slots"] == ["t", "t+3f"] and b["cameras"] == ["front", "left"]
    plan = ViewPlan.build({"x": obj.views()}, ["front", "left"])
    assert fake_batch(2, plan)["slots"] == plan.slots


class Good(Objective):
    """Mean squared embedding through a linear head (a toy that follows the contract)."""

    def __init__(self, embed_dim, options=None):
        super().__init__(embed_dim, options)
        self.head = nn.Linear(embed_dim, 3)

    def forward(self, emb, batch):
        m = batch["mask"][..., None].float()
        y = self.head(emb) * m
        return LossOutput((y**2).sum() / m.sum().clamp(min=1) + 0.1, {"rows": float(m.sum())})


def test_a_correct_toy_passes():
    check_objective(Good)


class NaNOnMissing(Good):
    def forward(self, emb, batch):
        out = super().forward(emb, batch)
        return LossOutput(out.loss / batch["mask"].all().float(), {})  # inf/NaN as soon as a frame is missing


class UnusedParameter(Good):
    def __init__(self, embed_dim, options=None):
        super().__init__(embed_dim, options)
        self.extra = nn.Linear(2, 2)


class UsesMaskedEntries(Good):
    def forward(self, emb, batch):
        return LossOutput((self.head(emb) ** 2).mean(), {})


class TensorMetric(Good):
    def forward(self, emb, batch):
        out = super().forward(emb, batch)
        return LossOutput(out.loss, {"bad": out.loss})  # not detached


class NotALossOutput(Good):
    def forward(self, emb, batch):
        return super().forward(emb, batch).loss


class BadViews(Good):
    def views(self):
        return {"cameras": "all"}


@pytest.mark.parametrize(
    "cls,message",
    [
        (NaNOnMissing, "not finite"),
        (UnusedParameter, "extra.weight"),
        (UsesMaskedEntries, "masked"),
        (TensorMetric, "metric 'bad'"),
        (NotALossOutput, "LossOutput"),
        (BadViews, "ViewRequest"),
    ],
)
def test_broken_objectives_fail_with_a_clear_message(cls, message):
    with pytest.raises(AssertionError, match=message):
        check_objective(cls)


def test_fixture_fake_batch(ssltk_fake_batch):
    assert ssltk.validate_batch(ssltk_fake_batch(2, ("t",), ("front",))) == (2, 1, 1)


@dataclass
class _Opts:
    scale: float = 1.0


def test_options_are_passed_to_classes():
    class Scaled(Good):
        Options = _Opts

    Scaled.name = "scaled"
    check_objective(Scaled, options={"scale": 2.0})
    with pytest.raises(ssltk.UnknownNameError):
        check_objective(Scaled, options={"scael": 2.0})


def test_views_default_is_the_anchor_frame():
    assert Good(4).views() == ViewRequest()
