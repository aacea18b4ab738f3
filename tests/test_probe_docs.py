"""docs/probe.md stays true: the example file is shown verbatim and runs; shown options exist."""

from __future__ import annotations

import dataclasses
import re
import runpy
import shlex
import sys
from pathlib import Path

import typer
from probe_helpers import write_probe_shards, write_tiny_bundle

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.probe import ProbeOptions

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "probe.md"
EXAMPLE = ROOT / "examples" / "probe_api.py"


def test_doc_shows_the_example_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert EXAMPLE.read_text() in blocks


def test_example_runs(tmp_path, capsys, monkeypatch):
    write_probe_shards(tmp_path / "shards", episodes=4, length=24, size=24, cameras=("front",))
    bundle = write_tiny_bundle(tmp_path / "bundle", seed=2)
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), str(bundle), str(tmp_path / "shards")])
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert re.search(r"^speed\s+R²\s+(beats all baselines|behind|within noise)\s+vs (random_init|raw_pixels)\s+delta [+-]\d", out, re.M), out
    assert "cross-camera: skipped: the data has one camera only" in out


def test_shown_commands_use_real_options():
    command = typer.main.get_command(build_app(get_plugin_manager(load=["ssltk"])))
    known = {opt for p in command.commands["probe"].params for opt in p.opts}
    shown = re.findall(r"^ssltk probe .*$", DOC.read_text(), flags=re.M)
    assert len(shown) >= 4
    for line in shown:
        words = shlex.split(line.split("#")[0].split(">")[0])
        for word in words:
            if word.startswith("--"):
                assert word in known, f"docs/probe.md shows {word}, which `ssltk probe` does not have"


def test_documented_options_are_the_real_fields():
    doc = DOC.read_text()
    for field in dataclasses.fields(ProbeOptions):
        if field.name not in ("seeds", "max_frames"):  # these two are run_probe arguments
            assert f"`{field.name}`" in doc, f"docs/probe.md does not mention ProbeOptions.{field.name}"
