"""pytest plugin shipped with ssltk (entry point ``pytest11``): fixtures for plugin authors.

pytest loads it by itself once ssltk is installed in the environment that runs
pytest (``pip install "ssltk[testing]"`` brings pytest too). Use the fixtures
in a plugin's tests without importing anything::

    def test_contract(ssltk_check_objective):
        ssltk_check_objective(MyObjective)

Each fixture returns a function (documented in ``docs/testing_plugins.md``):

* ``ssltk_check_objective(objective, *, options=None, embed_dim=16, batch_size=6,
  cameras=("front", "left", "right"), missing=0.3, seed=0) -> LossOutput``:
  :func:`ssltk.testing.check_objective`;
* ``ssltk_check_backbone(family, *, model=None, img_size=32, batch_size=2,
  kwargs=None, seed=0) -> Backbone``: :func:`ssltk.testing.check_backbone`;
* ``ssltk_fake_batch(B=4, slots=("t",), cameras=("front",), *, episodes=2,
  episode_length=40, missing=0.0, image_size=(8, 8), fps=10.0, seed=0) -> Batch``:
  :func:`ssltk.testing.fake_batch`;
* ``ssltk_registry_with(*dists, plugins=()) -> Registry``: a registry of the
  builtins plus the installed distributions ``dists`` (e.g. your own package)
  plus ``(name, object)`` plugins registered by hand; nothing else installed
  on the machine leaks in.

``ssltk_registry`` is a :class:`ssltk.Registry` (not a function) of ssltk's
builtin plugins only, unaffected by installed plugins.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def ssltk_check_objective():
    """:func:`ssltk.testing.check_objective`: assert an objective class or instance follows the contract."""
    from ssltk.testing.objectives import check_objective

    return check_objective


@pytest.fixture
def ssltk_check_backbone():
    """:func:`ssltk.testing.check_backbone`: assert a backbone family follows the contract."""
    from ssltk.testing.backbones import check_backbone

    return check_backbone


@pytest.fixture
def ssltk_fake_batch():
    """:func:`ssltk.testing.fake_batch`: build a contract-valid batch with episode/frame structure."""
    from ssltk.testing.objectives import fake_batch

    return fake_batch


@pytest.fixture
def ssltk_registry():
    """A :class:`ssltk.Registry` with ssltk's builtin plugins only."""
    from ssltk.plugins import get_plugin_manager
    from ssltk.registry import Registry

    return Registry(get_plugin_manager(load=["ssltk"]))


@pytest.fixture
def ssltk_registry_with():
    """``make(*dists, plugins=()) -> Registry``: builtins + the installed distributions ``dists`` + hand-made plugins."""
    from ssltk.plugins import get_plugin_manager
    from ssltk.registry import Registry

    def make(*dists: str, plugins=()) -> Registry:
        return Registry(get_plugin_manager(load=["ssltk", *dists], plugins=plugins))

    return make
