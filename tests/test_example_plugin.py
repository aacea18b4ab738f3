"""The example third-party plugin (examples/ssltk-frame-order), discovered through its installed metadata.

`make install` installs it (editable) next to ssltk; these tests load it the way
`ssltk` does for any user, through the ``ssltk`` entry-point group.
"""

from __future__ import annotations

import json
from importlib import metadata

import pytest
from typer.testing import CliRunner

import ssltk
from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing import check_objective

DIST = "ssltk-frame-order"


def _version() -> str | None:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return None


pytestmark = pytest.mark.skipif(
    _version() is None, reason=f"{DIST} is not installed: `make install` or `pip install -e examples/{DIST}`"
)


@pytest.fixture
def registry() -> Registry:
    return Registry(get_plugin_manager(load=["ssltk", DIST]))


def test_entry_point_metadata_is_installed():
    eps = [ep for ep in metadata.distribution(DIST).entry_points if ep.group == "ssltk"]
    assert [(ep.name, ep.value) for ep in eps] == [("frame-order", "ssltk_frame_order.plugin")]


def test_listed_with_the_example_dist_and_version():
    result = CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk", DIST])), ["list-plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    item = next(i for i in data["items"] if i["name"] == "frame-order")
    assert (item["kind"], item["plugin"]) == ("objective", "frame-order")
    assert (item["dist"], item["version"]) == (DIST, _version())
    assert item["summary"].startswith("Frame-order verification")
    assert all(b["dist"] != DIST for b in data["broken"])


def test_selectable_by_name(registry):
    from ssltk_frame_order import FrameOrder

    entry = registry.objective("frame-order")
    assert entry.obj is FrameOrder and entry.plugin.dist == DIST
    objective = entry.obj.from_options(32, max_delta=3)
    assert objective.views().deltas == (ssltk.DeltaRange(1, 3),)


def test_passes_the_objective_contract(registry):
    check_objective(registry.objective("frame-order").obj)


def test_not_loaded_when_load_env_excludes_it(monkeypatch):
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk")
    assert "frame-order" not in Registry(get_plugin_manager()).objectives
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", f"ssltk,{DIST}")
    assert "frame-order" in Registry(get_plugin_manager()).objectives


def test_disabled_by_distribution_name(monkeypatch):
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", DIST)
    pm = get_plugin_manager(load=["ssltk", DIST])
    assert "frame-order" not in pm.infos
    with pytest.raises(ssltk.UnknownNameError):
        Registry(pm).objective("frame-order")


@pytest.mark.slow
def test_trains_with_a_builtin_and_is_recorded_in_the_bundle(tmp_path):
    """End to end: the trainer builds the view plan, feeds frame-order its pairs, and the bundle names its dist."""
    from ssltk.testing.shards import write_tiny_shards

    shards = tmp_path / "shards"
    write_tiny_shards(
        shards, episodes=3, length=12, cameras=("front", "rear"), image_size=32, segment_length=8, overlap=4
    )
    out = tmp_path / "run"
    args = ["pretrain", "--backbone", "test_resnet", "--image-size", "32", "--batch-size", "4", "--num-workers", "0",
            "--steps", "2", "--data", str(shards), "--out", str(out), "--set", "log_every=1",
            "-o", "frame-order", "-o", "temporal-infonce=0.5", "--set", "temporal-infonce.dt=1-4",
            "--set", "frame-order.max_delta=3",
            "--set", "frame-order.cameras=all"]
    result = CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk", DIST])), args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "ssltk.json").read_text())
    objectives = {o["name"]: o for o in manifest["objectives"]}
    assert objectives["frame-order"]["options"]["max_delta"] == 3
    assert manifest["plugins"]["frame-order"] == {"dist": DIST, "version": _version()}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(0 < row["loss/frame-order"] < 5 for row in rows)
