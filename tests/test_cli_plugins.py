"""`ssltk list-plugins` and plugin-added commands, through CliRunner on build_app(pm)."""

from __future__ import annotations

import json

import typer
from plugin_helpers import TWIN_SOURCE, fake_dist, objective_plugin  # noqa: F401
from typer.testing import CliRunner

import ssltk
from ssltk.cli import build_app, friendly
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry

runner = CliRunner()
BOOM = "raise ImportError('needs libfoo >= 2\\nTraceback-like detail that must not show')\n"


def invoke(pm, *args: str):
    return runner.invoke(build_app(pm), list(args), env={"COLUMNS": "200"})


def test_json_lists_builtins_with_their_distribution():
    result = invoke(get_plugin_manager(load=["ssltk"]), "list-plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    timm = [i for i in data["items"] if i["name"] == "timm"]
    assert timm and timm[0]["kind"] == "backbone" and timm[0]["dist"] == "ssltk" and timm[0]["plugin"] == "timm"
    assert timm[0]["version"] == ssltk.__version__


def test_kind_filter():
    pm = get_plugin_manager(load=["ssltk"], plugins=[("tiny", objective_plugin("tiny"))])
    objectives = json.loads(invoke(pm, "list-plugins", "--kind", "objective", "--json").stdout)["items"]
    assert "tiny" in {i["name"] for i in objectives} and {i["kind"] for i in objectives} == {"objective"}
    backbones = json.loads(invoke(pm, "list-plugins", "--kind", "backbone", "--json").stdout)["items"]
    assert {i["kind"] for i in backbones} == {"backbone"}
    bad = invoke(pm, "list-plugins", "--kind", "objectiv")
    assert bad.exit_code == 2


def test_table_shows_name_and_provider(fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"}, version="4.5.6")
    result = invoke(get_plugin_manager(load=["ssltk-twin"]), "list-plugins")
    assert result.exit_code == 0
    row = [line for line in result.stdout.splitlines() if " twin " in line]
    assert row and "objective" in row[0] and "ssltk-twin 4.5.6" in row[0]


def test_broken_on_import_still_lists_and_shows_one_line_reason(fake_dist):
    fake_dist("ssltk-boom", {"ssltk_boom_mod": BOOM}, {"boom": "ssltk_boom_mod"}, version="0.9")
    pm = get_plugin_manager(load=["ssltk", "ssltk-boom"])
    table = invoke(pm, "list-plugins")
    assert table.exit_code == 0, table.output
    row = [line for line in table.stdout.splitlines() if " boom " in line]
    assert row and "broken" in row[0] and "ssltk-boom 0.9" in row[0] and "ImportError: needs libfoo >= 2" in row[0]
    assert "Traceback-like" not in table.output and "SSLTK_DISABLE_PLUGINS" in table.stdout
    data = json.loads(invoke(pm, "list-plugins", "--json").stdout)
    assert {"plugin": "boom", "dist": "ssltk-boom", "version": "0.9", "module": "ssltk_boom_mod",
            "error": "ImportError: needs libfoo >= 2"} in data["broken"]
    assert any(i["name"] == "timm" for i in data["items"])


def test_disabling_the_broken_plugin_clears_it(fake_dist, monkeypatch):
    fake_dist("ssltk-boom", {"ssltk_boom_mod": BOOM}, {"boom": "ssltk_boom_mod"})
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", "boom")
    data = json.loads(invoke(get_plugin_manager(load=["ssltk", "ssltk-boom"]), "list-plugins", "--json").stdout)
    assert all(b["plugin"] != "boom" for b in data["broken"])


def test_broken_hook_implementations_are_listed():
    class Raises:
        @ssltk.hookimpl
        def register_backbones(self, register):
            raise KeyError("TORCH_HOME")

    class Typo:
        @ssltk.hookimpl
        def register_comands(self, app):
            pass

    pm = get_plugin_manager(load=[], plugins=[("raises", Raises()), ("typo", Typo())])
    data = json.loads(invoke(pm, "list-plugins", "--json").stdout)
    errors = {b["plugin"]: b["error"] for b in data["broken"]}
    assert errors["raises"] == "KeyError: 'TORCH_HOME'"
    assert "register_comands" in errors["typo"]


def test_duplicate_name_is_one_line_exit_2(fake_dist):
    fake_dist("ssltk-twin", {"ssltk_twin_mod": TWIN_SOURCE}, {"twin": "ssltk_twin_mod"})
    pm = get_plugin_manager(load=["ssltk-twin"], plugins=[("other-twin", objective_plugin("twin"))])
    result = invoke(pm, "list-plugins")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    err = " ".join(result.stderr.split())
    assert "'twin' is registered twice" in err and "'twin' (ssltk-twin 1.2.3)" in err and "'other-twin'" in err


class PickCommand:
    """A test plugin adding `ssltk pick-objective NAME`, which resolves NAME in the registry."""

    def __init__(self) -> None:
        self.pm = None

    @ssltk.hookimpl
    def register_commands(self, app):
        @app.command("pick-objective")
        @friendly
        def pick(name: str) -> None:
            """Print which distribution provides objective NAME."""
            typer.echo(Registry(self.pm).objective(name).plugin.dist)


def test_plugin_command_with_unknown_objective_suggests_and_exits_2():
    plugin = PickCommand()
    plugin.pm = pm = get_plugin_manager(load=[], plugins=[("pick", plugin), ("t", objective_plugin("temporal-order"))])
    ok = invoke(pm, "pick-objective", "temporal-order")
    assert ok.exit_code == 0 and ok.stdout == "-\n"
    bad = invoke(pm, "pick-objective", "temporal-ordr")
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "unknown objective 'temporal-ordr'; did you mean 'temporal-order'?" in " ".join(bad.stderr.split())


def test_plugin_command_without_friendly_still_gets_one_line():
    """The root group catches what a bare plugin command raises: one line, exit code of the error."""

    class Bare:
        @ssltk.hookimpl
        def register_commands(self, app):
            @app.command("bare")
            def bare() -> None:
                raise ssltk.UsageError("bad input")

    result = invoke(get_plugin_manager(load=[], plugins=[("bare", Bare())]), "bare")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.strip() == "error: bad input"


def test_register_commands_that_raises_leaves_the_cli_working():
    class Raises:
        @ssltk.hookimpl
        def register_commands(self, app):
            raise RuntimeError("typer too old")

    pm = get_plugin_manager(load=["ssltk"], plugins=[("raises", Raises())])
    result = invoke(pm, "list-plugins", "--json")
    assert result.exit_code == 0
    assert {"plugin": "raises", "error": "RuntimeError: typer too old"}.items() <= next(
        b for b in json.loads(result.stdout)["broken"] if b["plugin"] == "raises"
    ).items()


def test_no_plugins_at_all_still_runs():
    result = invoke(get_plugin_manager(load=[]), "list-plugins", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == {"items": [], "broken": []}
