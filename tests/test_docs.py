"""The docs stay true: hook headings, one test per hook, excerpts of real files, generated CLI reference."""

from __future__ import annotations

import difflib
import inspect
import os
import re
import shlex
from importlib import metadata
from pathlib import Path

import pytest
from plugin_helpers import fake_dist  # noqa: F401
from typer.testing import CliRunner

from ssltk import hookspecs
from ssltk.cli import _docgen, build_app
from ssltk.plugins import get_plugin_manager

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_MD = ROOT / "docs" / "plugins.md"
HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "ssltk_spec"))
# A marker comment directly followed by a fenced block.
MARKED = re.compile(r"<!-- (excerpt|run|dry-run): ?(.*?) ?-->\n```[a-z]*\n(.*?)\n```", re.S)


def signature(name: str) -> str:
    """``name(arg1, arg2)``: the hook's name and argument names, as pluggy sees them."""
    return f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"


def marked_blocks(kind: str) -> list[tuple[str, str]]:
    return [(arg, body) for k, arg, body in MARKED.findall(PLUGINS_MD.read_text()) if k == kind]


def test_there_are_hooks():
    assert len(HOOKS) >= 4 and "register_objectives" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_heading_with_its_signature(hook):
    headings = [line for line in PLUGINS_MD.read_text().splitlines() if line.startswith("#")]
    assert any(f"`{signature(hook)}`" in h for h in headings), f"docs/plugins.md needs a heading `{signature(hook)}`"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    pattern = re.compile(rf"^\s*def test_hook_{hook}\(", re.M)
    files = [p for p in (ROOT / "tests").rglob("*.py") if pattern.search(p.read_text())]
    assert files, f"add a test named test_hook_{hook} to tests/"


def test_no_heading_for_a_hook_that_does_not_exist():
    documented = re.findall(r"^#+ `(\w+)\(", PLUGINS_MD.read_text(), re.M)
    assert documented and set(documented) <= set(HOOKS)


def test_excerpts_are_verbatim_parts_of_real_files():
    excerpts = marked_blocks("excerpt")
    assert len(excerpts) >= 5
    for path, body in excerpts:
        source = ROOT / path
        assert source.is_file(), f"docs/plugins.md quotes {path}, which does not exist"
        assert body in source.read_text(), f"docs/plugins.md's excerpt of {path} is out of date:\n{body}"


def test_relative_links_point_at_files():
    for target in re.findall(r"\]\((\.\.?/[^)#]+)", PLUGINS_MD.read_text()):
        assert (PLUGINS_MD.parent / target).exists(), f"broken link in docs/plugins.md: {target}"


def test_documented_env_switches_exist():
    named = set(re.findall(r"SSLTK_[A-Z_]+", PLUGINS_MD.read_text()))
    source = (ROOT / "ssltk" / "plugins.py").read_text()
    assert {"SSLTK_LOAD_PLUGINS", "SSLTK_DISABLE_PLUGINS", "SSLTK_TRACE_PLUGINS"} <= named
    assert all(name in source for name in named), named


def _split_command(line: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(line.replace("\\\n", " "))
    env = {}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[0] == "ssltk"
    return env, words[1:]


def _example_installed() -> bool:
    try:
        metadata.distribution("ssltk-frame-order")
    except metadata.PackageNotFoundError:
        return False
    return True


needs_example = pytest.mark.skipif(not _example_installed(), reason="examples/ssltk-frame-order is not installed")


@needs_example
def test_shown_command_output_is_real(monkeypatch):
    runs = marked_blocks("run")
    assert runs
    for command, expected in runs:
        env, args = _split_command(command)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        result = CliRunner().invoke(build_app(get_plugin_manager()), args)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == expected.strip(), f"output of `{command}` changed"
        for key in env:
            monkeypatch.delenv(key)


@pytest.mark.slow
@needs_example
def test_shown_pretrain_commands_are_valid(monkeypatch):
    """Each pretrain command shown is accepted as is (checked with --dry-run: nothing is trained)."""
    blocks = re.findall(r"```bash\n(ssltk pretrain .*?)\n```", PLUGINS_MD.read_text(), re.S)
    assert blocks
    monkeypatch.setenv("SSLTK_LOAD_PLUGINS", "ssltk,ssltk-frame-order")
    for block in blocks:
        _, args = _split_command(block)
        result = CliRunner().invoke(build_app(get_plugin_manager()), [*args, "--dry-run"])
        assert result.exit_code == 0, f"{block}\n{result.output}"
        assert "frame-order" in result.stdout


def test_cli_reference_is_up_to_date():
    current = (ROOT / "docs" / "cli.md").read_text() if (ROOT / "docs" / "cli.md").exists() else ""
    fresh = _docgen.render()
    if current != fresh:
        diff = difflib.unified_diff(current.splitlines(), fresh.splitlines(), "docs/cli.md", "--help now", lineterm="")
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/cli.md is stale: run `python -m ssltk.cli._docgen --write`\n{shown}", pytrace=False)


def test_cli_reference_covers_every_builtin_command():
    import typer

    app = build_app(get_plugin_manager(load=["ssltk"]))
    paths = _docgen.command_paths(typer.main.get_command(app))
    assert ("list-plugins",) in paths
    text = (ROOT / "docs" / "cli.md").read_text()
    for path in paths:
        assert f"## `{' '.join(('ssltk',) + path)}`" in text


def test_docgen_ignores_plugin_commands_and_disable_env(monkeypatch, fake_dist):
    """The reference is the same whatever the user has installed or disabled."""
    source = (
        "import ssltk\n\n@ssltk.hookimpl\ndef register_commands(app):\n"
        "    app.command('extra-cmd')(lambda: None)\n"
    )
    fake_dist("ssltk-extra", {"ssltk_extra_cmd": source}, {"extra": "ssltk_extra_cmd"})
    clean = _docgen.render()
    monkeypatch.delenv("SSLTK_LOAD_PLUGINS")
    monkeypatch.setenv("SSLTK_DISABLE_PLUGINS", "timm")
    assert "extra-cmd" in CliRunner().invoke(build_app(get_plugin_manager()), ["--help"]).stdout
    text = _docgen.render()
    assert "extra-cmd" not in text and os.environ["SSLTK_DISABLE_PLUGINS"] == "timm"
    assert text == clean
