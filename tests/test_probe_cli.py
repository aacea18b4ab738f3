"""``ssltk probe`` through CliRunner: table, --json, --out, --write-bundle, friendly errors."""

from __future__ import annotations

import json

import pytest
from probe_helpers import write_probe_shards, write_tiny_bundle
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.cli.probe import default_out, parse_seeds
from ssltk.errors import UsageError
from ssltk.plugins import get_plugin_manager


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("probecli")
    write_probe_shards(d / "shards", episodes=4, length=24, size=24)
    write_tiny_bundle(d / "bundle", seed=7)
    return d


def invoke(args):
    return CliRunner().invoke(build_app(get_plugin_manager(load=["ssltk"])), args)


def test_table_output_and_files(setup, tmp_path):
    # CliRunner's terminal is 80 columns wide: the table must fit it with nothing cut
    res = invoke(["probe", str(setup / "bundle"), "--data", str(setup / "shards"), "--out", str(tmp_path / "o"),
                  "--max-frames", "60", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    for text in ("bundle", "random", "pixels", "ego", "Δ best", "speed", "lane_offset", "temporal Δt=1", "R@5",
                 "→left", "mean±std over seeds 0, 1", "ego = ridge from speed"):
        assert text in res.stdout, text
    assert "…" not in res.stdout
    table = res.stdout.split("mean±std over seeds")[0]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "* not observable from these frames" in res.stdout  # lane_offset is noise
    assert (tmp_path / "o" / "probe.json").is_file() and (tmp_path / "o" / "probe.png").is_file()


def test_without_a_bundle_only_the_data_baselines_run(setup, tmp_path):
    res = invoke(["probe", "--data", str(setup / "shards"), "--out", str(tmp_path / "o"), "--max-frames", "60", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["columns"] == ["raw_pixels", "ego_status"] and data["bundle"] is None
    assert (tmp_path / "o" / "probe.png").is_file()


def test_json_output_parses_and_honours_seeds_and_write_bundle(setup, tmp_path):
    bundle = write_tiny_bundle(tmp_path / "b", seed=3)
    res = invoke(["probe", str(bundle), "--data", str(setup / "shards"), "--json", "--seeds", "4,5,6",
                  "--write-bundle", "--out", str(tmp_path / "o"), "--max-frames", "48", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["seeds"] == [4, 5, 6] and all(len(v) == 3 for v in data["rows"][0]["per_seed"].values())
    assert json.loads((bundle / "probe.json").read_text())["seeds"] == [4, 5, 6]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seeds", "0,x"], "--seeds"),
        (["--inputs", "t-2"], "unknown --inputs value"),
        (["--camera", "rear"], "unknown camera 'rear'"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(setup, args, message):
    res = invoke(["probe", str(setup / "bundle"), "--data", str(setup / "shards"), "--device", "cpu", *args])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_not_a_bundle_is_a_friendly_error(tmp_path, setup):
    res = invoke(["probe", str(tmp_path), "--data", str(setup / "shards")])
    assert res.exit_code == 2 and "is not a bundle" in res.output


def test_parse_seeds():
    assert parse_seeds("0,1") == (0, 1) and parse_seeds(" 3 ") == (3,)
    for bad in ("", "1,1", "a"):
        with pytest.raises(UsageError):
            parse_seeds(bad)


def test_default_out_sits_next_to_the_bundle(tmp_path):
    assert default_out(tmp_path / "runs" / "demo") == tmp_path / "runs" / "demo-probe"


def test_cli_default_frame_cap_matches_the_api():
    import inspect

    from ssltk.probe import ProbeOptions, run_probe

    app = build_app(get_plugin_manager(load=["ssltk"]))
    res = CliRunner().invoke(app, ["probe", "--help"])
    assert "2304" in res.stdout
    assert ProbeOptions().max_frames == inspect.signature(run_probe).parameters["max_frames"].default == 2304
