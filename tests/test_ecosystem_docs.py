"""The pages of issue 18 stay true: every example is a file shown verbatim and run here; shown commands use real
options; links resolve; every tracker setting is documented; the README links the pages."""

from __future__ import annotations

import importlib.util
import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from probe_helpers import write_probe_shards, write_tiny_bundle

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.testing.shards import write_tiny_shards
from ssltk.train.trackers import TRACKERS

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["pretrain.md", "bundle_format.md", "embed.md", "export.md", "trackers.md"]
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```python\n(.*?)```", re.S)
HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


def page(name: str) -> str:
    return (ROOT / "docs" / name).read_text()


def run_example(path: str, *args: str, capsys) -> str:
    old = sys.argv
    sys.argv = [path, *args]
    try:
        runpy.run_path(str(ROOT / path), run_name="__main__")
    finally:
        sys.argv = old
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_tiny_bundle(tmp_path_factory.mktemp("docs") / "bundle", size=24)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_probe_shards(tmp_path_factory.mktemp("docs") / "shards", episodes=2, length=10, size=24,
                              cameras=("front", "left"), segment_length=6, overlap=2, ego_fields=("speed",))


@pytest.mark.parametrize("name, example", [
    ("bundle_format.md", "examples/finetune_timm.py"), ("embed.md", "examples/embed_features.py"),
    ("export.md", "examples/export_onnx.py"), ("pretrain.md", "examples/pretrain_api.py"),
])  # fmt: skip
def test_examples_are_shown_verbatim(name, example):
    shown = dict(EXAMPLE.findall(page(name)))
    assert example in shown, f"docs/{name} does not show {example} (a <!-- example: {example} --> block)"
    assert shown[example] == (ROOT / example).read_text(), f"docs/{name} shows an old {example}"


def test_every_shown_example_exists():
    for name in PAGES:
        for path, _ in EXAMPLE.findall(page(name)):
            assert (ROOT / path).is_file(), f"docs/{name} shows {path}, which does not exist"


def test_finetune_example_trains_a_new_head(bundle, capsys):
    out = run_example("examples/finetune_timm.py", str(bundle), "5", capsys=capsys)
    assert "new head ['fc.bias', 'fc.weight']" in out and out.count(" loss ") == 3


def test_embed_example_both_formats(bundle, shards, tmp_path, capsys):
    for suffix in (".npy", ".parquet"):
        if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
            continue
        out = run_example("examples/embed_features.py", str(bundle), str(shards), str(tmp_path / f"f{suffix}"),
                          capsys=capsys)
        assert "40 frames x 96 features, cameras ['front', 'left'], ego ['speed']" in out
        assert "row 0 is {'episode': 'ep000'," in out


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNX, reason="onnx/onnxruntime not installed: pip install 'ssltk[export]'")
def test_export_example_runs_with_onnxruntime(bundle, tmp_path, capsys):
    import shutil

    copy = shutil.copytree(bundle, tmp_path / "b")
    out = run_example("examples/export_onnx.py", str(copy), capsys=capsys)
    diff = float(re.search(r"max \|onnx - torch\| = (\S+)", out).group(1))
    assert diff <= 1e-4 and "features (2, 96)" in out


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed: pip install 'ssltk[mlflow]'")
def test_pretrain_api_example_runs(tmp_path, capsys, monkeypatch):
    import logging

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the example's basicConfig stays in this test
    monkeypatch.setattr(root, "level", root.level)
    write_tiny_shards(tmp_path / "s", episodes=4, length=32, cameras=("front",), image_size=32, segment_length=16,
                      overlap=4)
    module = runpy.run_path(str(ROOT / "examples/pretrain_api.py"))  # main() with a tiny backbone and size
    result = module["main"](str(tmp_path / "s"), str(tmp_path / "run"), 2, backbone="test_resnet", image_size=32,
                            batch_size=8, num_workers=0, threads=1, warmup_steps=1, log_every=1)
    out = capsys.readouterr().out
    assert result.steps == 2 and (tmp_path / "run" / "mlflow.db").is_file()
    assert "mlflow run run (FINISHED): 2 loss values, backbone test_resnet" in out
    assert np.isfinite(result.final["loss"])


def _shown_commands(text: str) -> list[list[str]]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("ssltk "):
                commands.append(shlex.split(line)[1:])
    return commands


@pytest.mark.parametrize("name", PAGES)
def test_shown_commands_use_real_options(name):
    group = typer.main.get_command(build_app(get_plugin_manager(load=["ssltk"])))
    for args in _shown_commands(page(name)):
        command = group.commands[args[0]]
        known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
        for word in args[1:]:
            if word.startswith("-") and word not in ("-",):
                assert word.split("=")[0] in known, f"docs/{name} shows `{word}`, which `ssltk {args[0]}` does not have"


@pytest.mark.parametrize("name", PAGES)
def test_relative_links_resolve(name):
    for target in re.findall(r"\]\(((?:\.\./|[\w-]+\.md)[^)#]*)", page(name)):
        assert (ROOT / "docs" / target).exists(), f"broken link in docs/{name}: {target}"


def test_every_tracker_setting_is_documented():
    text = page("trackers.md")
    for name, (_module, extra, settings) in TRACKERS.items():
        assert f"| `{name}` | `pip install 'ssltk[{extra}]'`" in text
        for key in settings:
            assert f"`{key}`" in text, f"docs/trackers.md does not mention the {name} setting {key}"
    assert "`loggers`" in page("pretrain.md") and "--logger" in page("pretrain.md")


def test_bundle_page_lists_the_fine_tuning_keys():
    text = page("bundle_format.md")
    for key in ("`num_classes`", "`num_features`", "`global_pool`", "`pretrained_cfg.classifier`"):
        assert f"| {key} |" in text, key


def test_readme_links_the_pages():
    readme = (ROOT / "README.md").read_text()
    for name in PAGES:
        assert f"(docs/{name})" in readme, f"README.md does not link docs/{name}"
