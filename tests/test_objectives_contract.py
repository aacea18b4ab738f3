"""Every registered objective passes ssltk's contract check (ssltk.testing.check_objective)."""

from __future__ import annotations

import dataclasses

import pytest

from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing import check_objective

REGISTRY = Registry(get_plugin_manager(load=["ssltk"]))
BUILTINS = ("per-frame", "temporal-infonce", "multi-camera", "multi-positive", "future-prediction", "layout-prediction")


def test_the_builtin_objectives_are_registered():
    assert set(BUILTINS) <= set(REGISTRY.objectives)
    assert not REGISTRY.pm.broken


@pytest.mark.parametrize("name", sorted(REGISTRY.objectives))
def test_objective_contract(name):
    out = check_objective(REGISTRY.objective(name).obj)
    assert out.loss.item() > 0


@pytest.mark.parametrize("name", sorted(REGISTRY.objectives))
def test_objective_contract_without_head_and_two_cameras(name):
    entry = REGISTRY.objective(name)
    has_head = "proj_dim" in {f.name for f in dataclasses.fields(entry.obj.Options)}
    opts = {"proj_dim": 0} if name in BUILTINS and has_head else {}
    check_objective(entry.obj, options=opts, cameras=("front", "rear"), batch_size=3, seed=5)


def test_fixture_is_available(ssltk_check_objective, ssltk_registry):
    assert ssltk_check_objective is check_objective
    assert set(BUILTINS) <= set(ssltk_registry.objectives)
