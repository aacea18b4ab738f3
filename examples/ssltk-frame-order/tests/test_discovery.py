"""The installed package is found through its entry point, like any user would see it."""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

import ssltk
from ssltk.cli import build_app
from ssltk_frame_order import FrameOrder

DIST = "ssltk-frame-order"


def _installed() -> bool:
    try:
        metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _installed(), reason=f"{DIST} is not installed (pip install -e examples/{DIST})")


def test_appears_in_list_plugins_json():
    pm = ssltk.get_plugin_manager(load=[DIST])
    result = CliRunner().invoke(build_app(pm), ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert {"kind": "objective", "name": "frame-order", "dist": DIST} == {
        k: items[0][k] for k in ("kind", "name", "dist")
    }
    assert items[0]["version"] == metadata.version(DIST)


def test_selectable_by_name():
    registry = ssltk.Registry(ssltk.get_plugin_manager(load=[DIST]))
    assert registry.objective("frame-order").obj is FrameOrder
