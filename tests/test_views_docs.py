"""docs/views.md and docs/batch_contract.md stay true: excerpts, links, the example and its output."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "views.md", ROOT / "docs" / "batch_contract.md"]
MARKED = re.compile(r"<!-- (excerpt|output): ?(.*?) ?-->\n```[a-z]*\n(.*?)\n```", re.S)


def blocks(kind):
    return [(doc.name, path, body) for doc in DOCS for k, path, body in MARKED.findall(doc.read_text()) if k == kind]


def test_docs_have_excerpts():
    assert len(blocks("excerpt")) >= 4 and blocks("output")


@pytest.mark.parametrize("doc, path, body", blocks("excerpt"))
def test_excerpts_are_verbatim(doc, path, body):
    source = ROOT / path
    assert source.is_file(), f"{doc} quotes {path}, which does not exist"
    assert body in source.read_text(), f"{doc}'s excerpt of {path} is out of date:\n{body}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_at_files(doc):
    for target in re.findall(r"\]\(([^):#]+)", doc.read_text()):
        assert (doc.parent / target).exists(), f"broken link in {doc.name}: {target}"


def test_example_runs_and_prints_the_documented_output(capsys, monkeypatch):
    (doc, path, expected), = blocks("output")
    monkeypatch.setattr(sys, "argv", [path])
    runpy.run_path(str(ROOT / path), run_name="__main__")
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    for line in expected.splitlines():
        assert line in lines, f"{doc} shows {line!r}; the example printed:\n{printed}"
    assert lines[-1] == "skipped nothing"


def test_every_skip_kind_is_documented():
    from ssltk.data.shards.skips import SKIP_KINDS

    text = (ROOT / "docs" / "views.md").read_text()
    assert all(f"`{kind}`" in text for kind in SKIP_KINDS)


def test_every_augment_field_is_documented():
    import dataclasses

    from ssltk.data.stream.augment import AugmentConfig

    text = (ROOT / "docs" / "views.md").read_text()
    assert all(f"`{f.name}`" in text for f in dataclasses.fields(AugmentConfig))


def test_every_contract_key_is_documented():
    text = (ROOT / "docs" / "batch_contract.md").read_text()
    keys = ["frames", "mask", "episode", "frame_index", "timestamp", "dt", "slots", "cameras", "ego", "keys", "skipped"]
    assert all(f"| `{k}` |" in text for k in keys)
