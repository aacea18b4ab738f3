"""Every ``raise`` of an ssltk error, walked through the CLI: one line, the right exit code, no traceback.

The raise sites are found in the source (``ssltk/`` and the builtin plugins) with ``ast``; each
one's message is rebuilt from its literal text (``{…}`` where a value is filled in at run time)
and raised from a CLI command, with and without ``ssltk.cli.friendly``. A new raise site is
covered automatically; one whose message spans lines fails here.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import ssltk
from ssltk.cli import build_app, friendly
from ssltk.errors import SsltkError, UnknownNameError
from ssltk.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "ssltk", ROOT / "plugins" / "ssltk_builtins"]


def _import_all() -> None:
    """Import every module so that every SsltkError subclass is defined."""
    import ssltk_builtins

    for pkg in (ssltk, ssltk_builtins):
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if mod.name.endswith("__main__") or ".testing.pytest_plugin" in mod.name:
                continue
            importlib.import_module(mod.name)


def _subclasses(cls: type) -> dict[str, type]:
    out = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        out.update(_subclasses(sub))
    return out


def _template(node: ast.AST | None) -> str:
    """The literal text of a message expression, ``{…}`` for values filled in at run time."""
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{…}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left) + _template(node.right)
    return "{…}"


@dataclass(frozen=True)
class Site:
    where: str
    cls: str
    message: str
    args: tuple[str, ...]


def _sites() -> list[Site]:
    _import_all()
    classes = _subclasses(SsltkError)
    sites = []
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                    continue
                func = node.exc.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in classes:
                    args = tuple(_template(a) for a in node.exc.args)
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    sites.append(Site(where, name, args[0] if args else "", args))
    return sites


SITES = _sites()
CLASSES = _subclasses(SsltkError)
_current: list[BaseException] = []


class _Raiser:
    @ssltk.hookimpl
    def register_commands(self, app):
        @app.command("raise-bare")
        def bare() -> None:
            raise _current[0]

        @app.command("raise-friendly")
        @friendly
        def wrapped() -> None:
            raise _current[0]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    return build_app(get_plugin_manager(load=[], plugins=[("raiser", _Raiser())]))


def _build(site: Site) -> SsltkError:
    cls = CLASSES[site.cls]
    if issubclass(cls, UnknownNameError):
        return cls(site.args[0] if site.args else "name", "x", [])
    return cls(site.message)


def test_the_walk_finds_the_raise_sites():
    assert len(SITES) > 150, len(SITES)
    assert {"UsageError", "UnknownNameError", "TrainingDiverged", "BadDataError"} <= {s.cls for s in SITES}


@pytest.mark.parametrize("site", SITES, ids=[s.where for s in SITES])
def test_raise_site_is_one_line_through_the_cli(app, site):
    assert "\n" not in "".join(site.args), f"{site.where}: the message spans lines"
    exc = _build(site)
    assert exc.exit_code in (1, 2, 130), f"{site.where}: {site.cls}.exit_code = {exc.exit_code}"
    _current[:] = [exc]
    for command in ("raise-bare", "raise-friendly"):
        result = CliRunner().invoke(app, [command])
        assert result.exit_code == exc.exit_code, (site.where, command, result.output)
        assert "Traceback" not in result.output
        assert result.stderr.strip() == f"error: {exc}".strip(), (site.where, command, result.stderr)


def test_every_builtin_command_is_friendly():
    from typer.main import get_command

    root = get_command(build_app(get_plugin_manager(load=["ssltk"])))

    def walk(group, path=()):
        for name, cmd in group.commands.items():
            if hasattr(cmd, "commands"):
                yield from walk(cmd, (*path, name))
            else:
                yield " ".join((*path, name)), cmd

    commands = dict(walk(root))
    assert {"pretrain", "data inspect", "bundle verify", "list-plugins"} <= set(commands)
    for name, cmd in commands.items():
        assert getattr(cmd.callback, "ssltk_friendly", False), f"`ssltk {name}` is not wrapped in friendly()"


def test_debug_shows_the_traceback_then_the_same_line(app, monkeypatch):
    _current[:] = [ssltk.UsageError("bad input")]
    plain = CliRunner().invoke(app, ["raise-friendly"])
    assert plain.exit_code == 2 and plain.stderr.strip() == "error: bad input"
    flag = CliRunner().invoke(app, ["--debug", "raise-friendly"])
    monkeypatch.setenv("SSLTK_DEBUG", "1")
    env = CliRunner().invoke(app, ["raise-friendly"])
    for result in (flag, env):
        assert result.exit_code == 2 and "Traceback" in result.stderr
        assert result.stderr.strip().splitlines()[-1] == "error: bad input"


def test_unexpected_error_is_one_line_with_the_debug_hint(app):
    _current[:] = [ZeroDivisionError("division by zero")]
    for command in ("raise-bare", "raise-friendly"):
        result = CliRunner().invoke(app, [command])
        assert result.exit_code == 1 and "Traceback" not in result.output
        line = result.stderr.strip()
        assert line.startswith("error: unexpected ZeroDivisionError: division by zero") and "--debug" in line


def test_os_error_is_one_line_with_the_path(app):
    _current[:] = [OSError(30, "Read-only file system", "/ro/run/metrics.jsonl")]
    result = CliRunner().invoke(app, ["raise-friendly"])
    assert result.exit_code == 1 and result.stderr.strip() == "error: Read-only file system: /ro/run/metrics.jsonl"


def test_usage_errors_of_the_command_line_are_one_line(app):
    cases = {
        ("pretrian",): "no such command 'pretrian'",
        ("raise-bare", "--nope"): "no such option --nope",
        ("list-plugins", "--kind", "x"): "invalid value for '--kind'",
    }
    full = build_app(get_plugin_manager(load=["ssltk"]))
    for args, expected in cases.items():
        result = CliRunner().invoke(full if args[0] != "raise-bare" else app, list(args))
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (args, result.stderr)
        assert "--help" in lines[0]


def test_unknown_distribution_in_ssltk_load_plugins_is_one_line(monkeypatch):
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk,ssltk-frame-ordr")
    result = CliRunner().invoke(build_app(get_plugin_manager()), ["list-plugins"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "ssltk-frame-ordr" in line and "SSLTK_LOAD_PLUGINS" in line and "\n" not in line
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk")
    assert CliRunner().invoke(build_app(get_plugin_manager()), ["list-plugins"]).exit_code == 0


def test_one_line_is_safe_on_empty_and_multi_line_messages():
    from ssltk.errors import one_line

    assert one_line(RuntimeError()) == "RuntimeError"
    assert one_line(ValueError("  \n")) == "ValueError"
    assert one_line(OSError("first\nsecond")) == "OSError: first"
