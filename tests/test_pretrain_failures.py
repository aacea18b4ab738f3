"""A failed `pretrain` leaves nothing half-made and says so in one line (issue 16; issue 17 point 4).

Bad input found before training: exit 2, one line, nothing written to --out. A failure during
training (a plugin's objective or backbone raising, a read-only disk, bad data under --strict):
exit 1 (2 for bad data), one line naming the culprit, and either the last checkpoint (the line
says how to resume) or nothing left behind.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
import torch
from plugin_helpers import fake_dist  # noqa: F401
from typer.testing import CliRunner

from ssltk.cli import build_app
from ssltk.plugins import get_plugin_manager
from ssltk.testing.shards import write_tiny_shards

runner = CliRunner()
BASE = ["--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
        "--set", "warmup_steps=1", "--set", "threads=1"]
TINY = [*BASE, "-o", "temporal-infonce", "--set", "temporal-infonce.dt=1-4"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front", "rear"), image_size=32, segment_length=10, overlap=4)
    return d


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


def lines_of(result) -> list[str]:
    return [ln for ln in result.stderr.strip().splitlines() if ln.strip()]


def one_line(result, code: int) -> str:
    """The single stderr line of a failure (stdout may hold the progress bar)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = lines_of(result)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


# ------------------------------------------------------------------ checks before training
def _bad_inputs(tmp: Path, shards: Path) -> dict[str, list[str]]:
    (tmp / "empty").mkdir()
    (tmp / "pngs").mkdir()
    (tmp / "pngs" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp / "bad.pth").write_bytes(b"not weights")
    return {
        "missing data": ["--data", str(tmp / "nonexistent")],
        "empty folder": ["--data", str(tmp / "empty")],
        "folder of PNGs": ["--data", str(tmp / "pngs")],
        "dt too long": ["--data", str(shards), "-o", "temporal-infonce", "--set", "temporal-infonce.dt=30"],
        "unknown anchor camera": ["--data", str(shards), "--set", "anchor_camera=left_wing"],
        "unreadable init": ["--data", str(shards), "--init", str(tmp / "bad.pth")],
        "tagged timm name": ["--data", str(shards), "--backbone", "resnet50.a1_in1k"],
        "config key typo": ["--data", str(shards), "--set", "learning_rat=0.1"],
        # found by benchmarks/soak_bad_inputs.py
        "seed overflow": ["--data", str(shards), "--seed", "9" * 30],
        "empty init": ["--data", str(shards), "--init", ""],
        "data name too long": ["--data", "x" * 5000],
        "init name too long": ["--data", str(shards), "--init", "y" * 5000],
        "objectives not a mapping": ["--data", str(shards), "--set", "objectives={a: 1}"],
        "options not a mapping": ["--data", str(shards), "--set", "objectives={temporal-infonce: {options: 3}}"],
    }


def test_bad_input_before_training_writes_nothing(app, shards, tmp_path):
    for name, extra in _bad_inputs(tmp_path, shards).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}"
        r = runner.invoke(app, ["pretrain", *TINY, *extra, "--out", str(out), "--steps", "2"])
        one_line(r, 2)
        assert not out.exists(), f"{name}: left {sorted(p.name for p in out.iterdir())}"


def test_out_name_too_long_and_sheet_without_image_suffix_are_usage_errors(app, shards, tmp_path):
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(shards), "--out", str(tmp_path / ("z" * 5000))])
    assert "File name too long" in one_line(r, 2)
    r = runner.invoke(app, ["data", "inspect", str(shards), "--sheet", str(tmp_path / "sheet")])
    assert ".png" in one_line(r, 2) and not (tmp_path / "sheet").exists()


def test_messages_say_how_to_fix(app, shards, tmp_path):
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(shards), "--backbone", "resnet50.a1_in1k"])
    assert "never downloads" in one_line(r, 2) and "--init" in r.output
    r = runner.invoke(app, ["pretrain", "--set", "learning_rat=0.1", "--dry-run"])
    assert "did you mean 'lr'?" in one_line(r, 2)
    r = runner.invoke(app, ["pretrain", "--learning-rate", "0.1"])
    assert "did you mean --lr" in one_line(r, 2)  # not Typer's 5-line panel


def test_strict_failure_at_startup_names_lenient_and_writes_nothing(app, tmp_path):
    d = tmp_path / "bad"
    write_tiny_shards(d, episodes=2, length=20, cameras=("front", "rear"), image_size=32, segment_length=10)
    first = sorted(d.glob("*.tar"))[0]
    first.write_bytes(first.read_bytes()[:3000])
    out = tmp_path / "out"
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(d), "--out", str(out), "--steps", "2", "--strict"])
    line = one_line(r, 2)
    assert "--lenient" in line and "strict=False" not in line
    assert not out.exists()


def test_read_only_out_is_one_line(app, shards, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(shards), "--out", str(ro / "run"), "--steps", "2"])
    assert "cannot write in" in one_line(r, 2)
    assert list(ro.iterdir()) == []


# ------------------------------------------------------------------ failures during training
BOOM = '''
import ssltk, torch


class Boom(ssltk.Objective):
    """Raises at its third forward call."""

    def __init__(self, embed_dim, options=None):
        super().__init__(embed_dim, options)
        self.proj = torch.nn.Linear(embed_dim, 4)
        self.calls = 0

    def forward(self, emb, batch):
        self.calls += 1
        if self.calls >= 3:
            raise ValueError(f"boom at call {self.calls}")
        return ssltk.LossOutput(self.proj(emb[:, 0, 0]).pow(2).mean())


@ssltk.hookimpl
def register_objectives(register):
    register("boom", Boom)
'''

FLAKY = '''
import ssltk
from ssltk_builtins.timm_backbones import TimmFamily, TimmBackbone


class FlakyBackbone(TimmBackbone):
    calls = 0

    def forward(self, x):
        FlakyBackbone.calls += 1
        if FlakyBackbone.calls >= 3:
            raise RuntimeError("backbone exploded")
        return super().forward(x)


class Flaky(TimmFamily):
    name = "flaky"
    summary = "test_resnet that raises on its third forward"

    def list_models(self, pattern=None):
        return ["flaky_resnet"]

    def has_model(self, model):
        return model == "flaky_resnet"

    def create(self, model, **kwargs):
        bb = super().create("test_resnet", **kwargs)
        bb.__class__ = FlakyBackbone
        return bb


@ssltk.hookimpl
def register_backbones(register):
    register(Flaky())
'''


def _boom_app(fake_dist):
    fake_dist("ssltk-boom-objective", {"ssltk_boom_obj": BOOM}, {"boom": "ssltk_boom_obj"}, version="0.3.1")
    return build_app(get_plugin_manager(load=["ssltk", "ssltk-boom-objective"]))


@pytest.mark.slow
def test_plugin_objective_failure_names_plugin_and_keeps_the_checkpoint(fake_dist, shards, tmp_path):
    app = _boom_app(fake_dist)
    out = tmp_path / "run"
    args = ["pretrain", *BASE, "--data", str(shards), "--out", str(out), "--steps", "4", "-o", "boom",
            "--set", "checkpoint_every=2"]
    line = one_line(runner.invoke(app, args), 1)
    assert "objective 'boom'" in line and "ssltk-boom-objective 0.3.1" in line
    assert "ValueError: boom at call 3" in line and "at step 3" in line
    assert "checkpoint of step 2 is kept" in line and f"--resume {out}" in line
    assert json.loads((out / "train_state" / "state.json").read_text())["step"] == 2
    assert not list(out.glob("train_state.tmp-*")) and not (out / "ssltk.json").exists()

    debug = runner.invoke(app, ["--debug", *args[:-2], "--overwrite"])  # the traceback only on request
    assert debug.exit_code == 1 and "Traceback" in debug.output and "boom at call 3" in debug.output
    assert lines_of(debug)[-1].startswith("error:")


@pytest.mark.slow
def test_failure_before_the_first_checkpoint_leaves_nothing(fake_dist, shards, tmp_path):
    app = _boom_app(fake_dist)
    out = tmp_path / "run"
    r = runner.invoke(app, ["pretrain", *BASE, "--data", str(shards), "--out", str(out), "--steps", "4", "-o", "boom"])
    assert "nothing was kept" in one_line(r, 1)
    assert not out.exists()


@pytest.mark.slow
def test_plugin_backbone_failure_names_the_family(fake_dist, shards, tmp_path):
    fake_dist("ssltk-flaky", {"ssltk_flaky_bb": FLAKY}, {"flaky": "ssltk_flaky_bb"}, version="2.0")
    app = build_app(get_plugin_manager(load=["ssltk", "ssltk-flaky"]))
    out = tmp_path / "run"
    r = runner.invoke(app, ["pretrain", *TINY, "--backbone", "flaky_resnet", "--data", str(shards),
                            "--out", str(out), "--steps", "4", "--set", "checkpoint_every=1"])
    line = one_line(r, 1)
    assert "backbone 'flaky_resnet'" in line and "ssltk-flaky 2.0" in line and "RuntimeError: backbone exploded" in line
    assert "is kept: resume with" in line


@pytest.mark.slow
def test_read_only_disk_during_training_is_one_line_and_leaves_nothing(app, shards, tmp_path, monkeypatch):
    from ssltk.train import metrics

    def refuse(self, row):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(metrics.MetricsLog, "write", refuse)
    out = tmp_path / "run"
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(shards), "--out", str(out), "--steps", "2",
                            "--set", "log_every=1"])
    line = one_line(r, 1)
    assert "Read-only file system" in line and "metrics.jsonl" in line
    assert not out.exists()


# ------------------------------------------------------------------ the train state
def _finished_run(app, shards: Path, out: Path, steps: int = 2) -> None:
    r = runner.invoke(app, ["pretrain", *TINY, "--data", str(shards), "--out", str(out), "--steps", str(steps),
                            "--set", "checkpoint_every=1"])
    assert r.exit_code == 0, r.output


class _Payload:
    """Unpickling this runs code (what a tampered train state could hold)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.slow
def test_tampered_train_state_is_refused_in_one_line_and_verify_fails(app, shards, tmp_path):
    from ssltk.fileio import sha256_file

    out = tmp_path / "run"
    _finished_run(app, shards, out)
    verified = runner.invoke(app, ["bundle", "verify", str(out)])
    assert verified.exit_code == 0 and "train state (step 2) matches" in verified.output

    marker = tmp_path / "payload-ran"
    state = out / "train_state"
    torch.save({"model": _Payload(str(marker))}, state / "modules.pt")
    info = json.loads((state / "state.json").read_text())
    info["files"]["modules.pt"] = sha256_file(state / "modules.pt")  # a careful attacker rewrites the hash
    (state / "state.json").write_text(json.dumps(info))

    r = runner.invoke(app, ["pretrain", "--resume", str(out), "--steps", "3"])
    line = one_line(r, 2)
    assert "modules.pt" in line and "refused" in line
    assert not marker.exists()  # the payload never ran

    v = runner.invoke(app, ["bundle", "verify", str(out)])
    assert v.exit_code == 1 and "Traceback" not in v.output
    assert "state.json" in v.output and "modules.pt: sha256 mismatch" in v.output


@pytest.mark.slow
def test_leftover_staging_folders_are_removed_on_resume(app, shards, tmp_path):
    out = tmp_path / "run"
    _finished_run(app, shards, out)
    leak = out / "train_state.tmp-999999"  # what a kill -9 during a checkpoint write leaves
    leak.mkdir()
    (leak / "modules.pt").write_bytes(b"\0" * 1024)
    (out / ".ssltk-write-999999").mkdir()
    r = runner.invoke(app, ["pretrain", "--resume", str(out), "--steps", "3"])
    assert r.exit_code == 0, r.output
    assert not leak.exists() and not (out / ".ssltk-write-999999").exists()
    assert json.loads((out / "train_state" / "state.json").read_text())["step"] == 3


@pytest.mark.slow
def test_a_truncated_shard_is_warned_about_once(tmp_path, monkeypatch, caplog):
    from ssltk.data.shards import skips
    from ssltk.registry import Registry
    from ssltk.train.config import load_config
    from ssltk.train.loop import pretrain

    monkeypatch.setattr(skips, "_WARNED", set())
    d = tmp_path / "d"
    write_tiny_shards(d, episodes=4, length=20, cameras=("front",), image_size=32, segment_length=10, overlap=4)
    last = sorted(d.glob("*.tar"))[-1]
    last.write_bytes(last.read_bytes()[:-3000])
    cfg = load_config(None, dict(data=str(d), out=str(tmp_path / "run"), steps=3, backbone="test_resnet",
                                 image_size=32, batch_size=8, num_workers=0, checkpoint_every=1, threads=1))
    cfg.objectives[0].options["dt"] = "1-4"
    with caplog.at_level(logging.WARNING, logger="ssltk.data"):
        result = pretrain(cfg, registry=Registry(get_plugin_manager(load=["ssltk"])))
    assert result.skipped.get("truncated_tar", 0) >= 2  # met in every chunk
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "truncated" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in warned]
