"""The objective docs stay true: verbatim excerpts, working links, option tables, the walk-through runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "losses.md", ROOT / "docs" / "temporal_ssl_infonce.md", *sorted((ROOT / "docs" / "objectives").glob("*.md"))]
EXCERPT = re.compile(r"<!-- excerpt: ?(.*?) ?-->\n```[a-z]*\n(.*?)\n```", re.S)
OPTION_ROW = re.compile(r"^\| `(\w+)` \| `([^`]*)` \|", re.M)
BUILTINS = Registry(get_plugin_manager(load=["ssltk"])).objectives


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_excerpts_are_verbatim(doc):
    for path, body in EXCERPT.findall(doc.read_text()):
        source = ROOT / path
        assert source.is_file(), f"{_id(doc)} quotes {path}, which does not exist"
        assert body in source.read_text(), f"{_id(doc)}: excerpt of {path} is out of date:\n{body}"


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_relative_links_point_at_files(doc):
    for target in re.findall(r"\]\((\.\.?/[^)#]+|[\w\-/]+\.md)", doc.read_text()):
        assert (doc.parent / target).exists(), f"broken link in {_id(doc)}: {target}"


def test_walkthrough_has_excerpts():
    assert len(EXCERPT.findall((ROOT / "docs" / "temporal_ssl_infonce.md").read_text())) >= 7


def _default_text(f: dataclasses.Field) -> str:
    v = f.default
    return str(v).lower() if isinstance(v, bool) else str(v)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_has_a_page_whose_option_table_matches(name):
    page = ROOT / "docs" / "objectives" / f"{name}.md"
    assert page.is_file(), f"add docs/objectives/{name}.md"
    text = page.read_text()
    assert text.startswith(f"# `{name}`")
    table = dict(OPTION_ROW.findall(text))
    fields = {f.name: _default_text(f) for f in dataclasses.fields(BUILTINS[name].obj.Options)}
    assert table == fields, f"docs/objectives/{name}.md option table differs from {name}.Options"
    assert "## References" in text and "## Views" in text


def test_walkthrough_script_runs(capsys):
    spec = importlib.util.spec_from_file_location("infonce_walkthrough", ROOT / "examples" / "infonce_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    metrics = module.main()
    out = capsys.readouterr().out
    assert "positives per row" in out and "loss " in out
    assert metrics["anchors"] > 0 and metrics["pos_per_anchor"] == 1.0
