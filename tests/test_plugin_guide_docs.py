"""The plugin-author guide stays true: excerpts, links, signatures, fixtures and public names."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import ssltk

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDE = ("writing_objectives.md", "writing_backbones.md", "testing_plugins.md")
MARKED = re.compile(r"<!-- excerpt: ?(.*?) ?-->\n```[a-z]*\n(.*?)\n```", re.S)


def text(name: str) -> str:
    return (DOCS / name).read_text()


def flat(s: str) -> str:
    return re.sub(r"\s+", " ", s)


@pytest.mark.parametrize("page", GUIDE)
def test_excerpts_are_verbatim_parts_of_real_files(page):
    excerpts = MARKED.findall(text(page))
    assert excerpts
    for path, body in excerpts:
        source = ROOT / path
        assert source.is_file(), f"{page} quotes {path}, which does not exist"
        assert body in source.read_text(), f"{page}'s excerpt of {path} is out of date:\n{body}"


@pytest.mark.parametrize("page", (*GUIDE, "plugins.md", "losses.md", "bundle_format.md", "ema.md"))
def test_relative_links_resolve(page):
    for target, anchor in re.findall(r"\]\(([^)#:]+)(#[^)]*)?\)", text(page)):
        assert (DOCS / target).exists(), f"broken link in {page}: {target}"
        if anchor and target.endswith(".md"):
            headings = re.findall(r"^#+ (.*)$", text(str((DOCS / target).relative_to(DOCS))), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor[1:] in slugs, f"{page}: no heading for {target}{anchor}"


def test_plugins_page_links_the_guide_and_no_source_files():
    page = text("plugins.md")
    for name in (*GUIDE, "ema.md", "losses.md", "bundle_format.md", "batch_contract.md"):
        assert f"]({name}" in page, f"docs/plugins.md does not link {name}"
    sources = re.findall(r"\]\(\.\./((?:ssltk|tests|plugins)/[^)]*)\)", page)
    assert not sources, f"docs/plugins.md links source files instead of docs: {sources}"


def _signature(func, name: str | None = None, skip_self: bool = False) -> str:
    """``name(a, b=1, *, c=None)`` with defaults as Python writes them, no annotations."""
    parts, star = [], False
    params = list(inspect.signature(func).parameters.values())[1 if skip_self else 0:]
    for p in params:
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if p.kind is p.VAR_KEYWORD:
            parts.append(f"**{p.name}")
        elif p.kind is p.VAR_POSITIONAL:
            parts.append(f"*{p.name}")
            star = True
        else:
            parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"{name or func.__name__}({', '.join(parts)})"


def _strip_annotations(doc: str) -> str:
    """The documented signatures with ``: type`` and ``-> type`` removed."""
    doc = re.sub(r" -> [^\n]*", "", doc)
    return re.sub(r": [A-Za-z_.\[\]| ]+?(?=(, | =|=|\)))", "", doc).replace(" = ", "=")


def test_testing_page_shows_the_real_signatures():
    from ssltk.testing import check_backbone, check_objective, fake_batch

    doc = flat(text("testing_plugins.md").replace('"', "'"))
    for func, prefix in ((check_objective, "ssltk.testing."), (check_backbone, "ssltk.testing."), (fake_batch, "")):
        assert prefix + _signature(func) in doc, f"docs/testing_plugins.md: {_signature(func)}"


def test_every_fixture_is_documented():
    from ssltk.testing import pytest_plugin

    fixtures = [n for n in dir(pytest_plugin) if n.startswith("ssltk_")]
    assert {"ssltk_check_objective", "ssltk_check_backbone", "ssltk_fake_batch", "ssltk_registry", "ssltk_registry_with"} == set(fixtures)
    doc = text("testing_plugins.md")
    for name in fixtures:
        assert f"| `{name}` |" in doc, f"docs/testing_plugins.md: fixture {name} is not in the table"
    assert "ssltk_registry_with(*dists, plugins=())" in doc


def test_backbone_page_shows_the_real_signatures():
    doc = flat(_strip_annotations(text("writing_backbones.md")))
    fam = ssltk.BackboneFamily
    for method in ("list_models", "has_model", "create"):
        sig = _signature(getattr(fam, method), skip_self=True)
        assert f"def {sig[:sig.index('(')]}(self, {sig[sig.index('(') + 1:]}" in doc, sig
    assert "save_pretrained(self, directory, extra_config)" in flat(_strip_annotations(text("writing_backbones.md")))
    assert list(inspect.signature(ssltk.Backbone.save_pretrained).parameters) == ["self", "directory", "extra_config"]


def test_objective_page_matches_the_base_class():
    doc = text("writing_objectives.md")
    assert list(inspect.signature(ssltk.Objective.__init__).parameters) == ["self", "embed_dim", "options"]
    assert "def __init__(self, embed_dim: int, options: MyOptions | None = None) -> None" in doc
    for helper in ("world", "gather_with_grad", "gather_nograd", "all_reduce_sum", "ddp_mean"):
        assert f"`ssltk.{helper}(" in doc


def test_every_public_name_listed_for_objectives_exists():
    doc = text("writing_objectives.md")
    listed = doc[doc.index("## The public API an objective may use"):]
    names = set(re.findall(r"`(\w+)`", listed)) - {"ssltk", "testing"}
    assert len(names) > 20
    assert names <= set(ssltk.__all__), names - set(ssltk.__all__)


def test_no_page_tells_plugins_to_import_core_modules():
    for page in (*GUIDE, "losses.md", "plugins.md", "ema.md"):
        for module in ("ssltk.contrastive.", "ssltk.losses.", "ssltk.objectives.", "ssltk.heads."):
            assert module not in text(page), f"{page} names {module}: plugins import from ssltk only"


def test_the_testing_extra_brings_pytest():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("pytest") for req in extras["testing"])
    assert set(extras["testing"]) <= set(extras["dev"]), "the dev extra (what `make test` installs) must bring the testing extra"
    assert 'pip install "ssltk[testing]"' in text("testing_plugins.md")
