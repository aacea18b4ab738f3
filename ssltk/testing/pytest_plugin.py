"""pytest plugin shipped with ssltk (entry point ``pytest11``): fixtures for plugin authors.

Use them in a plugin's tests without importing anything::

    def test_contract(ssltk_check_objective):
        ssltk_check_objective(MyObjective)

Fixtures: ``ssltk_check_objective`` (:func:`ssltk.testing.check_objective`),
``ssltk_fake_batch`` (:func:`ssltk.testing.fake_batch`) and ``ssltk_registry``
(a registry of ssltk's builtin plugins only, unaffected by installed plugins).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def ssltk_check_objective():
    """:func:`ssltk.testing.check_objective`: assert an objective class or instance follows the contract."""
    from ssltk.testing.objectives import check_objective

    return check_objective


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
