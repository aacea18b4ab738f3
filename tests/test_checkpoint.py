"""Resumable training state: exact resume, RNG capture, atomic writes under a crash."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import timm.optim
import timm.scheduler
import torch
from torch import nn

from ssltk import checkpoint
from ssltk.checkpoint import find_train_state, get_rng_state, load_train_state, save_train_state, set_rng_state
from ssltk.errors import UsageError


def _make(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2))
    head = nn.Linear(2, 2)
    params = nn.ModuleDict({"model": model, "head": head})
    opt = timm.optim.create_optimizer_v2(params, "adamw", lr=1e-2, weight_decay=0.05)
    sched = timm.scheduler.CosineLRScheduler(opt, t_initial=10, warmup_t=3, warmup_lr_init=1e-4, t_in_epochs=False)
    return {"model": model, "head": head}, opt, sched


def _train(modules, opt, sched, start: int, stop: int) -> None:
    """Every random source feeds the update, so a wrong RNG restore changes the result."""
    for step in range(start, stop):
        x = torch.randn(5, 6) + random.random() + float(np.random.rand())
        loss = modules["head"](modules["model"](x)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step_update(step + 1)


def _params(modules):
    return {f"{n}.{k}": v.clone() for n, m in modules.items() for k, v in m.state_dict().items()}


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def test_resume_is_bit_identical_to_never_stopping(tmp_path):
    _seed_all(1)
    modules, opt, sched = _make(0)
    _seed_all(1)
    _train(modules, opt, sched, 0, 8)
    reference = _params(modules)
    ref_lr = [g["lr"] for g in opt.param_groups]

    modules, opt, sched = _make(0)
    _seed_all(1)
    _train(modules, opt, sched, 0, 4)
    save_train_state(tmp_path / "train_state", step=4, modules=modules, optimizer=opt, scheduler=sched, extra={"k": 1})
    _seed_all(99)  # scramble everything: the restore must undo it
    modules2, opt2, sched2 = _make(7)
    step, extra = load_train_state(tmp_path / "train_state", modules=modules2, optimizer=opt2, scheduler=sched2)
    assert (step, extra) == (4, {"k": 1})
    _train(modules2, opt2, sched2, step, 8)

    resumed = _params(modules2)
    assert reference.keys() == resumed.keys()
    for k in reference:
        assert torch.equal(reference[k], resumed[k]), k
    assert [g["lr"] for g in opt2.param_groups] == ref_lr


def test_without_rng_restore_the_run_diverges(tmp_path):
    """Guards the test above: it would catch a missing RNG restore."""
    modules, opt, sched = _make(0)
    _seed_all(1)
    _train(modules, opt, sched, 0, 6)
    reference = _params(modules)
    modules, opt, sched = _make(0)
    _seed_all(1)
    _train(modules, opt, sched, 0, 3)
    save_train_state(tmp_path / "ts", step=3, modules=modules, optimizer=opt, scheduler=sched)
    _seed_all(99)
    m2, o2, s2 = _make(0)
    load_train_state(tmp_path / "ts", modules=m2, optimizer=o2, scheduler=s2, rng=False)
    _train(m2, o2, s2, 3, 6)
    assert not all(torch.equal(reference[k], v) for k, v in _params(m2).items())


def test_rng_state_round_trip():
    _seed_all(3)
    state = get_rng_state()
    a = (random.random(), float(np.random.randn()), torch.rand(3))
    _seed_all(4)
    set_rng_state(state)
    b = (random.random(), float(np.random.randn()), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_files_load_with_weights_only(tmp_path):
    modules, opt, sched = _make(0)
    _train(modules, opt, sched, 0, 2)
    out = save_train_state(tmp_path / "ts", step=2, modules=modules, optimizer=opt, scheduler=sched)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["modules.pt", "optimizer.pt", "rng.pt", "scheduler.pt", "state.json"]
    for name in names[:-1]:
        torch.load(out / name, weights_only=True)  # raises on pickled code
    info = json.loads((out / "state.json").read_text())
    assert info["step"] == 2 and info["modules"] == ["head", "model"]
    assert set(info["files"]) == set(names[:-1])


def test_crash_mid_write_keeps_previous_state(tmp_path, monkeypatch):
    modules, opt, sched = _make(0)
    target = tmp_path / "train_state"
    save_train_state(target, step=1, modules=modules, optimizer=opt, scheduler=sched)
    before = _params(modules)
    _train(modules, opt, sched, 1, 3)

    real_write, calls = checkpoint._write, []

    def crashing_write(path, obj):
        calls.append(path.name)
        if len(calls) == 2:  # modules.pt written, optimizer.pt fails
            raise OSError("disk full (simulated)")
        real_write(path, obj)

    monkeypatch.setattr(checkpoint, "_write", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        save_train_state(target, step=3, modules=modules, optimizer=opt, scheduler=sched)
    monkeypatch.undo()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_state"]  # temp folder cleaned
    fresh, o2, s2 = _make(5)
    step, _ = load_train_state(target, modules=fresh, optimizer=o2, scheduler=s2)
    assert step == 1
    assert all(torch.equal(before[k], v) for k, v in _params(fresh).items())


def test_crash_between_renames_falls_back_to_old(tmp_path, monkeypatch):
    modules, opt, sched = _make(0)
    target = tmp_path / "train_state"
    save_train_state(target, step=1, modules=modules, optimizer=opt, scheduler=sched)
    real_replace = checkpoint.os.replace

    def replace(src, dst):
        if ".tmp-" in str(src):  # the second rename: new state into place
            raise OSError("killed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(OSError, match="simulated"):
        save_train_state(target, step=2, modules=modules, optimizer=opt, scheduler=sched)
    monkeypatch.undo()
    assert not target.exists()
    assert find_train_state(target).name.startswith("train_state.old-")
    step, _ = load_train_state(target, modules=_make(1)[0])
    assert step == 1
    # The next successful save cleans the leftovers.
    save_train_state(target, step=3, modules=modules)
    assert sorted(p.name for p in tmp_path.iterdir() if "train_state" in p.name) == ["train_state"]


def test_incomplete_state_is_not_used(tmp_path):
    modules, _, _ = _make(0)
    target = save_train_state(tmp_path / "ts", step=1, modules=modules)
    (target / "state.json").unlink()
    with pytest.raises(UsageError, match="no complete training state"):
        load_train_state(target, modules=modules)


def test_corrupt_file_is_reported(tmp_path):
    modules, _, _ = _make(0)
    target = save_train_state(tmp_path / "ts", step=1, modules=modules)
    data = bytearray((target / "modules.pt").read_bytes())
    data[-20] ^= 0xFF
    (target / "modules.pt").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="corrupt"):
        load_train_state(target, modules=modules)


def test_module_mismatch_is_a_usage_error(tmp_path):
    modules, _, _ = _make(0)
    target = save_train_state(tmp_path / "ts", step=1, modules=modules)
    with pytest.raises(UsageError, match="holds modules"):
        load_train_state(target, modules={"model": modules["model"]})
    with pytest.raises(UsageError, match="does not match"):
        load_train_state(target, modules={"model": nn.Linear(6, 8), "head": modules["head"]})


def test_extra_must_be_json(tmp_path):
    modules, _, _ = _make(0)
    with pytest.raises(UsageError, match="JSON"):
        save_train_state(tmp_path / "ts", step=1, modules=modules, extra={"x": object()})
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_and_device_state_round_trip(tmp_path):
    model = nn.Linear(4, 4).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4, device="cuda")).sum().backward()
    opt.step()
    save_train_state(tmp_path / "ts", step=1, modules={"m": model}, optimizer=opt)
    a = torch.rand(3, device="cuda")
    model2 = nn.Linear(4, 4).cuda()
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    load_train_state(tmp_path / "ts", modules={"m": model2}, optimizer=opt2)
    assert torch.equal(torch.rand(3, device="cuda"), a)
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["exp_avg"].device.type == "cuda"
