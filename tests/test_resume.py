"""Kill-and-resume equality, NaN handling and overwrite protection of `ssltk pretrain`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ssltk
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing.shards import write_tiny_shards
from ssltk.train.config import load_config
from ssltk.train.loop import TrainingDiverged, pretrain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("shards")
    write_tiny_shards(d, episodes=4, length=20, cameras=("front",), image_size=32, segment_length=10, overlap=4)
    return d


def _cfg(shards: Path, out: Path, steps: int = 6, **kw):
    base = dict(
        data=str(shards), out=str(out), steps=steps, backbone="test_resnet", image_size=32, batch_size=8,
        num_workers=0, log_every=1, checkpoint_every=2, warmup_steps=1, threads=1,
    )
    base.update(kw)
    base.setdefault("objectives", {"temporal-infonce": {"dt": "1-4"}})  # explicit: not whatever the default is
    return load_config(None, base)


def _cli_args(shards: Path, out: Path, steps: int = 6) -> list[str]:
    return [
        sys.executable, "-m", "ssltk", "pretrain", "--data", str(shards), "--out", str(out), "--steps", str(steps),
        "--backbone", "test_resnet", "--image-size", "32", "--batch-size", "8", "--num-workers", "0",
        "--set", "log_every=1", "--set", "checkpoint_every=2", "--set", "warmup_steps=1", "--set", "threads=1",
        "-o", "temporal-infonce", "--set", "temporal-infonce.dt=1-4",
    ]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def _logged_step(out: Path) -> int:
    path = out / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


def test_sigkill_then_resume_matches_uninterrupted_run(shards, tmp_path):
    registry = Registry(get_plugin_manager(load=["ssltk"]))
    ref = tmp_path / "ref"
    pretrain(_cfg(shards, ref), registry=registry)

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSLTK_LOAD_PLUGINS": "ssltk"}
    proc = subprocess.Popen(_cli_args(shards, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while _logged_step(out) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)  # between checkpoints (steps 2 and 4)
    proc.wait()
    assert not (out / "ssltk.json").exists()  # no bundle yet: the run did not finish

    res = subprocess.run([*_cli_args(shards, out)[:4], "--resume", str(out)], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    steps = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # rows after the resumed checkpoint were replaced, not duplicated


class _NaNAtStep3(ssltk.Objective):
    """Test objective: a finite loss for two steps, then NaN."""

    name = "nan-at-3"

    def __init__(self, embed_dim, options=None):
        super().__init__(embed_dim, options)
        self.proj = torch.nn.Linear(embed_dim, 4)
        self.calls = 0

    def forward(self, emb, batch):
        self.calls += 1
        loss = self.proj(emb[:, 0, 0]).pow(2).mean()
        return ssltk.LossOutput(loss * float("nan") if self.calls >= 3 else loss)


class _NaNPlugin:
    @staticmethod
    @ssltk.hookimpl
    def register_objectives(register):
        register("nan-at-3", _NaNAtStep3)


def test_nan_loss_stops_naming_step_and_objective_and_keeps_checkpoint(shards, tmp_path):
    registry = Registry(get_plugin_manager(load=["ssltk"], plugins=[("nan-test", _NaNPlugin)]))
    cfg = _cfg(shards, tmp_path / "nan")
    cfg.objectives[0].name, cfg.objectives[0].options = "nan-at-3", {}
    with pytest.raises(TrainingDiverged, match=r"'nan-at-3'.*step 3"):
        pretrain(cfg, registry=registry)
    state = json.loads((tmp_path / "nan" / "train_state" / "state.json").read_text())
    assert state["step"] == 2  # the last good checkpoint survives


class _Stop(Exception):
    pass


def _stop_at(step: int):
    def progress(done, total, row):
        if done == step:
            raise _Stop(step)

    return progress


def _ema_cfg(shards: Path, out: Path):
    cfg = _cfg(shards, out, steps=4)
    cfg.objectives = load_config(None, {"objectives": {
        "temporal-infonce": {"dt": "1-4", "proj_dim": 16, "hidden_dim": 32},
        "future-prediction": {"weight": 0.5, "dt": "1-3", "proj_dim": 16, "hidden_dim": 32, "pred_hidden": 32,
                              "momentum": 0.9},
    }}).objectives
    return cfg


def _train_state_model(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "train_state" / "modules.pt", weights_only=True)["model"]


def test_ema_target_resumes_bit_exactly(shards, tmp_path):
    """4 steps straight vs 2 steps, a crash, then --resume: weights, heads and EMA targets are bit-equal."""
    registry = Registry(get_plugin_manager(load=["ssltk"]))
    ref = tmp_path / "ref"
    pretrain(_ema_cfg(shards, ref), registry=registry)

    out = tmp_path / "resumed"
    with pytest.raises(_Stop):  # dies during step 3, after the step-2 checkpoint
        pretrain(_ema_cfg(shards, out), registry=registry, progress=_stop_at(3))
    assert json.loads((out / "train_state" / "state.json").read_text())["step"] == 2
    pretrain(_ema_cfg(shards, out), registry=registry, resume=True)

    a, b = _train_state_model(ref), _train_state_model(out)
    ema_keys = [k for k in a if k.startswith("targets.future-prediction.module.")]
    assert ema_keys and any(".target_projector.module." in k for k in a)
    assert int(a["targets.future-prediction.last_step"]) == 4
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    # the target moved away from its initial copy but is not the online backbone
    moved = [k for k in ema_keys if k.endswith("weight")]
    assert any(not torch.equal(a[k], a["backbone." + k.removeprefix("targets.future-prediction.module.")]) for k in moved)
    for name in ("model.safetensors", "heads.safetensors"):
        x, y = load_file(str(ref / name)), load_file(str(out / name))
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["future-prediction/ema_momentum"] == 1.0  # cosine schedule ends at final_momentum
    assert 0.9 < rows[0]["future-prediction/ema_momentum"] < 1.0
