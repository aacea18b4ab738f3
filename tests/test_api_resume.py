"""`ssltk.pretrain(...)` end to end; a run started into an interrupted run folder resumes it (or refuses in one
line); `--resume` without a folder; the log lines without a terminal and the bar at 80 columns."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.text import Text
from safetensors.torch import load_file
from typer.testing import CliRunner

import ssltk
from ssltk.api import _objectives
from ssltk.cli import build_app
from ssltk.cli.progress import bar_info, make_bar
from ssltk.errors import UnknownNameError, UsageError
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing.shards import write_tiny_shards
from ssltk.train.config import load_config
from ssltk.train.loop import RunResult, pretrain
from ssltk.train.resume import find_last_run

runner = CliRunner()
TINY = dict(backbone="test_resnet", image_size=32, batch_size=8, num_workers=0, log_every=1, checkpoint_every=2,
            warmup_steps=1, threads=1)
OBJ = {"temporal-infonce": {"dt": "1-4"}}
CLI = ["--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
       "--set", "log_every=1", "--set", "checkpoint_every=2", "--set", "warmup_steps=1", "--set", "threads=1",
       "-o", "temporal-infonce", "--set", "temporal-infonce.dt=1-4"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front",), image_size=32, segment_length=10, overlap=4)
    return d


@pytest.fixture(scope="module")
def app():
    return build_app(get_plugin_manager(load=["ssltk"]))


@pytest.fixture(scope="module")
def reference(shards, tmp_path_factory) -> Path:
    """4 uninterrupted steps through the Python API."""
    out = tmp_path_factory.mktemp("ref") / "run"
    result = ssltk.pretrain(objectives=OBJ, data=shards, out=out, steps=4, progress=False, **TINY)
    assert isinstance(result, RunResult)
    return out


def interrupted(shards: Path, out: Path, steps: int = 4) -> Path:
    """A run of 4 steps stopped after step 3: its step-2 checkpoint is kept, no bundle."""

    def stop(step, total, row):
        if step == 3:
            raise KeyboardInterrupt

    cfg = load_config(None, dict(TINY, objectives=OBJ, data=str(shards), out=str(out), steps=steps))
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, registry=Registry(get_plugin_manager(load=["ssltk"])), progress=stop)
    assert (out / "run_config.yaml").is_file() and not (out / "ssltk.json").exists()
    return out


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def steps_logged(out: Path) -> list[int]:
    return [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]


@pytest.mark.slow
def test_python_api_end_to_end(reference):
    manifest = json.loads((reference / "ssltk.json").read_text())
    assert manifest["steps"] == 4 and [o["name"] for o in manifest["objectives"]] == ["temporal-infonce"]
    assert steps_logged(reference) == [1, 2, 3, 4]
    rows = [json.loads(ln) for ln in (reference / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["data_wait"] <= 1 and r["elapsed_s"] >= 0 and r["eta_s"] >= 0 for r in rows)
    assert rows[-1]["eta_s"] == 0
    from ssltk.bundle import load_backbone

    model, pre = load_backbone(reference)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, model.num_features) and pre["input_size"][-1] == 32


def test_python_api_objective_forms_and_bad_keys(tmp_path):
    assert _objectives("a") == ["a"]
    assert _objectives(["a", "b=0.5", ("c", 2)]) == ["a", "b=0.5", {"name": "c", "weight": 2.0}]
    assert _objectives({"a": {"weight": 1}}) == {"a": {"weight": 1}}
    with pytest.raises(UnknownNameError, match="'lr'"):
        ssltk.pretrain(out=tmp_path / "r", learning_rat=1e-3, progress=False)
    with pytest.raises(UnknownNameError, match="objective"):
        ssltk.pretrain(objectives="no-such-objective", out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_python_api_resumes_an_interrupted_run_bit_exactly(shards, reference, tmp_path):
    out = interrupted(shards, tmp_path / "run")
    with pytest.raises(UsageError, match="interrupted run .step 2.*--overwrite"):
        ssltk.pretrain(objectives=OBJ, data=shards, out=out, steps=4, resume=False, progress=False, **TINY)
    result = ssltk.pretrain(objectives=OBJ, data=shards, out=out, steps=4, progress=False, **TINY)
    assert result.steps == 4 and same_weights(reference, out)
    assert steps_logged(out) == [1, 2, 3, 4]  # the rows after the checkpoint were replaced


@pytest.mark.slow
def test_cli_into_an_interrupted_run_resumes_it(app, shards, reference, tmp_path):
    out = interrupted(shards, tmp_path / "run")
    result = runner.invoke(app, ["pretrain", "--data", str(shards), "--out", str(out), "--steps", "4", *CLI])
    assert result.exit_code == 0, result.output
    assert f"resuming the interrupted run in {out} from step 2" in " ".join(result.output.split())
    assert same_weights(reference, out)


@pytest.mark.slow
def test_cli_into_an_interrupted_run_with_another_config_refuses(app, shards, tmp_path):
    out = interrupted(shards, tmp_path / "run")
    before = sorted(p.name for p in out.rglob("*"))
    result = runner.invoke(app, ["pretrain", "--data", str(shards), "--out", str(out), "--steps", "4", *CLI,
                                 "--lr", "0.5", "--seed", "3"])
    line = one_line_error(result)
    assert "interrupted run (step 2)" in line and "lr, seed differ" in line
    assert f"--resume {out}" in line and "--overwrite" in line
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing touched
    # --overwrite starts again from step 0
    result = runner.invoke(app, ["pretrain", "--data", str(shards), "--out", str(out), "--steps", "2", *CLI,
                                 "--lr", "0.5", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert steps_logged(out) == [1, 2] and "resuming" not in result.output


@pytest.mark.slow
def test_resume_without_a_folder_picks_the_newest_run_in_out(app, shards, reference, tmp_path):
    parent = tmp_path / "runs"
    older = interrupted(shards, parent / "a")
    newer = interrupted(shards, parent / "b")
    (parent / "not-a-run").mkdir()
    stamp = time.time()
    os.utime(older / "train_state", (stamp - 100, stamp - 100))
    assert find_last_run(parent) == newer
    result = runner.invoke(app, ["pretrain", "--resume", "--out", str(parent)])
    assert result.exit_code == 0, result.output
    assert (newer / "ssltk.json").is_file() and not (older / "ssltk.json").exists()
    assert same_weights(reference, newer)
    result = runner.invoke(app, ["pretrain", "--out", str(older), "--resume"])  # --out that is a run folder
    assert result.exit_code == 0, result.output
    assert same_weights(reference, older)


def test_resume_refusals_are_one_line(app, tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_line_error(runner.invoke(app, ["pretrain", "--resume", "--out", str(tmp_path / "empty")]))
    assert "no run to resume in" in line
    line = one_line_error(runner.invoke(app, ["pretrain", "--resume", "--out", str(tmp_path / "missing")]))
    assert "no run to resume in" in line
    line = one_line_error(runner.invoke(app, ["pretrain", "--resume", str(tmp_path / "empty")]))
    assert "run_config.yaml" in line
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_config.yaml").write_text("steps: 2\n")
    line = one_line_error(runner.invoke(app, ["pretrain", "--resume", str(run), "--out", str(tmp_path / "other")]))
    assert "leave out --out" in line
    for opt in (["--lr", "0.1"], ["--strict"], ["--lenient"], ["--seed", "1"]):  # --lr and --strict were ignored
        line = one_line_error(runner.invoke(app, ["pretrain", "--resume", str(run), *opt]))
        assert "only --steps and run-time options" in line, opt
    with pytest.raises(UsageError, match="no run to resume"):
        find_last_run(tmp_path / "empty")


@pytest.mark.slow
def test_plain_log_lines_without_a_terminal(app, shards, tmp_path):
    args = ["pretrain", "--data", str(shards), "--out", str(tmp_path / "r"), "--steps", "2", *CLI[:-4],
            "-o", "temporal-infonce", "-o", "per-frame=0.5", "--set", "temporal-infonce.dt=1-4"]
    result = runner.invoke(app, args)  # CliRunner's output is not a terminal
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.output.splitlines() if " step " in ln and "/2 loss" in ln]
    assert len(lines) == 2, result.output
    for n, line in enumerate(lines, 1):
        assert f"step {n}/2 loss " in line and "(temporal-infonce " in line and ", per-frame " in line
        assert " lr " in line and " samples/s " in line and " data-wait " in line and " eta " in line
        assert "…" not in line and len(line) > 80  # complete, not cut at the terminal width


@pytest.mark.parametrize("width", [60, 80, 120])
@pytest.mark.parametrize("total", [10, 1_000_000])
def test_bar_fits_the_console(width, total):
    typical = {"loss": 4.1234, "loss/temporal-infonce": 4.0, "loss/per-frame": 0.2445, "lr": 1.2e-3,
               "samples_per_s": 512.3, "data_wait": 0.12}
    extreme = {"loss": 12345.678, "lr": 1.234e-3, "samples_per_s": 123456.7, "data_wait": 0.995}
    for row in (typical, extreme):
        buf = io.StringIO()
        console = Console(file=buf, width=width, force_terminal=True, color_system=None)
        bar = make_bar(console, total)
        task = bar.add_task("train", total=total, info=bar_info(row))
        bar.update(task, completed=total // 3)
        console.print(bar.make_tasks_table(bar.tasks))
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        assert len(lines) == 1, buf.getvalue()  # one line, not wrapped
        assert Text.from_ansi(lines[0]).cell_len <= width
        assert f"step {total // 3}/{total}" in lines[0] and lines[0].rstrip().endswith("--:--")  # the eta stays
        if width >= 80 and row is typical:  # the whole info at 80 columns and wider
            assert "loss 4.123 lr 1.2e-03 512/s wait 12%" in lines[0], lines[0]


@pytest.mark.slow
def test_resuming_a_finished_run_needs_more_steps(app, shards, reference, tmp_path):
    import shutil

    run = Path(shutil.copytree(reference, tmp_path / "runs" / "done"))
    stamp = (run / "model.safetensors").stat().st_mtime_ns
    for args in (["--resume", str(run)], ["--resume", "--out", str(tmp_path / "runs")], ["--resume", str(run), "--steps", "4"]):
        line = one_line_error(runner.invoke(app, ["pretrain", *args]))  # was: the bundle rewritten, 0.0 samples/s
        assert "finished at step 4" in line and "--steps N with N above 4" in line, args
    with pytest.raises(UsageError, match="finished at step 4"):
        ssltk.pretrain(objectives=OBJ, data=shards, out=run, steps=4, resume=True, progress=False, **TINY)
    assert (run / "model.safetensors").stat().st_mtime_ns == stamp
    result = runner.invoke(app, ["pretrain", "--resume", str(run), "--steps", "6"])  # more steps: it trains on
    assert result.exit_code == 0, result.output
    assert steps_logged(run) == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "ssltk.json").read_text())["steps"] == 6


@pytest.mark.slow
def test_ssltk_probe_is_callable_and_returns_what_the_cli_prints(app, tmp_path):
    from probe_helpers import write_probe_shards, write_tiny_bundle

    data = write_probe_shards(tmp_path / "s", episodes=4, length=24, size=24, cameras=("front",))
    bundle = write_tiny_bundle(tmp_path / "b", seed=2)
    report = ssltk.probe(bundle, str(data), seeds=(0,), max_frames=96, out=tmp_path / "api")  # called: run_probe
    result = runner.invoke(app, ["probe", str(bundle), "--data", str(data), "--seeds", "0", "--max-frames", "96",
                                 "--out", str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert set(printed) == set(report) and printed["seeds"] == report["seeds"] == [0]

    def means(r):
        return {(row["probe"], model): s["mean"] for row in r["rows"] for model, s in row["summary"].items()}

    assert means(report) and means(printed) == pytest.approx(means(report))


@pytest.mark.slow
def test_python_api_resumes_a_run_folder_with_its_own_config(shards, reference, tmp_path):
    out = interrupted(shards, tmp_path / "run")
    with pytest.raises(UsageError, match="only --steps and run-time options"):
        ssltk.pretrain(resume=out, lr=0.5, progress=False)  # what the run learns comes from its run_config.yaml
    result = ssltk.pretrain(resume=out, progress=False)  # as `ssltk pretrain --resume RUN`
    assert result.steps == 4 and same_weights(reference, out)
    with pytest.raises(UsageError, match="finished at step 4"):
        ssltk.pretrain(resume=out, progress=False)
