"""`ssltk bundle inspect | verify` through the real app (CliRunner)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ssltk.checkpoint import save_train_state
from ssltk.cli import build_app

from test_bundle import make_bundle  # tests/ is on sys.path (pytest rootdir conftest)


@pytest.fixture(scope="module")
def app():
    return build_app()


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "run")


def test_group_help_lists_commands(app, runner):
    result = runner.invoke(app, ["bundle"])
    assert "inspect" in result.output and "verify" in result.output


def test_verify_ok(app, runner, bundle_dir):
    result = runner.invoke(app, ["bundle", "verify", str(bundle_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 3 files (")
    assert "backbone resnet18 loads with 0 missing / 0 unexpected keys; 1 head(s)" in result.output


def test_verify_tampered_exits_1_with_reasons(app, runner, tmp_path):
    out = make_bundle(tmp_path / "run")
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    (out / "heads.safetensors").unlink()
    result = runner.invoke(app, ["bundle", "verify", str(out)])
    assert result.exit_code == 1
    assert "2 problem(s)" in result.output
    assert "model.safetensors: sha256 does not match" in result.output
    assert "missing file heads.safetensors" in result.output
    assert "Traceback" not in result.output


def test_verify_not_a_bundle_exits_2(app, runner, tmp_path):
    result = runner.invoke(app, ["bundle", "verify", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not an ssltk bundle" in result.output and "Traceback" not in result.output


def test_inspect_readable(app, runner, bundle_dir):
    result = runner.invoke(app, ["bundle", "inspect", str(bundle_dir)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("timm:resnet18", "512 features", "temporal-infonce (weight 1)", "final metrics", "loss=1.25",
                 "3 files", "train state", "none"):
        assert text in result.output, text


def test_inspect_json(app, runner, tmp_path):
    out = make_bundle(tmp_path / "run")
    save_train_state(out / "train_state", step=7, modules={})
    result = runner.invoke(app, ["bundle", "inspect", str(out), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["backbone"]["name"] == "resnet18"
    assert info["steps"] == 10 and info["train_state"]["step"] == 7
    assert set(info["files"]) == {"model.safetensors", "config.json", "heads.safetensors"}


def test_inspect_not_a_bundle_exits_2(app, runner, tmp_path):
    result = runner.invoke(app, ["bundle", "inspect", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not an ssltk bundle" in result.output
