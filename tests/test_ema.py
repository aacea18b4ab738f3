"""ssltk.EMA and ssltk.TargetRequest: exact updates, the momentum schedule, state round trips, the trainer's wiring."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import ssltk
from ssltk.ema import EMA, TargetRequest, cosine_momentum
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing import fake_batch
from ssltk.train.model import SSLModel
from ssltk.views import ViewPlan


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))


def _perturb(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g))
        for b in module.buffers():
            if b.is_floating_point():
                b.add_(torch.rand(b.shape, generator=g))


def test_public_names():
    assert ssltk.EMA is EMA and ssltk.TargetRequest is TargetRequest
    assert {"EMA", "TargetRequest"} <= set(ssltk.__all__) and {"EMA", "TargetRequest"} <= set(dir(ssltk))


def test_copy_is_frozen_and_starts_equal():
    src = _net()
    ema = EMA(src, momentum=0.9, final_momentum=None)
    assert all(not p.requires_grad for p in ema.parameters())
    for (ka, a), (kb, b) in zip(ema.module.state_dict().items(), src.state_dict().items()):
        assert ka == kb and torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    assert ema.source is src
    assert set(ema.state_dict()) == {f"module.{k}" for k in src.state_dict()} | {"last_step"}
    out = ema(torch.randn(4, 5))
    assert not out.requires_grad  # runs under no_grad: nothing flows back into the target


@pytest.mark.parametrize("m", [0.0, 0.5, 0.996, 1.0])
def test_update_is_exactly_m_target_plus_one_minus_m_source(m):
    src = _net()
    ema = EMA(src, momentum=m, final_momentum=None)
    _perturb(ema.module, 1)  # make target and source differ
    _perturb(src, 2)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    used = ema.update(step=7)
    assert used == m and ema.last_momentum == m and int(ema.last_step) == 7
    for name, p in src.named_parameters():
        expect = m * before[name] + (1 - m) * p.detach()
        assert torch.equal(dict(ema.module.named_parameters())[name], expect), name
    for name, b in src.named_buffers():  # BatchNorm statistics (and the int counter) follow the source
        assert torch.equal(dict(ema.module.named_buffers())[name], b), name


def test_update_in_float64_too():
    src = _net().double()
    ema = EMA(src, momentum=0.75, final_momentum=None)
    _perturb(src, 3)
    before = [p.clone() for p in ema.module.parameters()]
    ema.update(1)
    for old, new, s in zip(before, ema.module.parameters(), src.parameters()):
        assert new.dtype == torch.float64 and torch.equal(new, 0.75 * old + 0.25 * s.detach())


def test_cosine_schedule_closed_form():
    K, m0, m1 = 100, 0.99, 1.0
    assert cosine_momentum(0, K, m0, m1) == m0
    assert cosine_momentum(K, K, m0, m1) == m1
    assert cosine_momentum(2 * K, K, m0, m1) == m1  # a run extended past its schedule stays at the end
    assert math.isclose(cosine_momentum(K // 2, K, m0, m1), (m0 + m1) / 2, rel_tol=0, abs_tol=1e-15)
    assert math.isclose(cosine_momentum(25, K, m0, m1), m1 - (m1 - m0) * (math.cos(math.pi / 4) + 1) / 2)
    ema = EMA(_net(), momentum=m0, final_momentum=m1)
    assert ema.momentum_at(30, K) == cosine_momentum(30, K, m0, m1)
    values = [ema.momentum_at(k, K) for k in range(K + 1)]
    assert values == sorted(values)
    with pytest.raises(ssltk.UsageError, match="total_steps"):
        ema.update(3)
    assert EMA(_net(), momentum=0.9, final_momentum=None).momentum_at(50) == 0.9
    assert EMA(_net(), momentum=0.9, final_momentum=0.9).momentum_at(50) == 0.9


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x", True])
def test_bad_momentum_is_a_usage_error(bad):
    with pytest.raises(ssltk.UsageError, match="momentum"):
        EMA(_net(), momentum=bad)
    with pytest.raises(ssltk.UsageError, match="momentum"):
        TargetRequest((0,), momentum=0.9, final_momentum=bad)


def test_target_request_validation():
    assert TargetRequest([1, 2]).slots == (1, 2)
    for bad in [(), (-1,), (1, 1), ("a",)]:
        with pytest.raises(ssltk.UsageError, match="slots"):
            TargetRequest(bad)


def test_state_dict_round_trip_restores_weights_and_step():
    src = _net()
    ema = EMA(src, momentum=0.5, final_momentum=None)
    _perturb(src, 4)
    ema.update(5)
    state = {k: v.clone() for k, v in ema.state_dict().items()}
    other = EMA(_net(seed=9), momentum=0.5, final_momentum=None)
    other.load_state_dict(state)
    assert int(other.last_step) == 5
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k]), k


class _Holder(nn.Module):
    """An objective-like module with its own EMA head, and an EMA of a module that itself holds an EMA."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3, 3)
        self.head_ema = EMA(self.head, momentum=0.5, final_momentum=None)
        self.outer = EMA(nn.Sequential(nn.Linear(2, 2), EMA(nn.Linear(2, 2), 0.1, None)), 0.25, None)


def test_update_all_updates_every_ema_once_but_not_nested_copies():
    h = _Holder()
    done = EMA.update_all(h, step=1)
    assert done == {"head_ema": 0.5, "outer": 0.25}
    assert int(h.outer.module[1].last_step) == 0  # the nested copy is part of `outer`'s weights


def _model_with(names_opts: dict, cameras=("front",)) -> SSLModel:
    reg = Registry(get_plugin_manager(load=["ssltk"]))
    fam, name = reg.backbone("test_convnext")
    torch.manual_seed(0)
    bb = fam.obj.create(name, img_size=32)
    objs = {n: reg.objective(n).obj.from_options(bb.num_features, **o) for n, o in names_opts.items()}
    plan = ViewPlan.build({n: o.views() for n, o in objs.items()}, list(cameras))
    dc = bb.data_config
    return SSLModel(bb, objs, dict.fromkeys(objs, 1.0), plan, dc["mean"], dc["std"])


FP = {"dt": "1-2", "proj_dim": 8, "hidden_dim": 16, "pred_hidden": 16, "context": 2, "momentum": 0.5, "final_momentum": 0.5}


def test_trainer_model_builds_runs_and_updates_the_backbone_target():
    from ssltk.train.config import load_config
    from ssltk.train.loop import make_optimizer

    model = _model_with({"temporal-infonce": {"dt": "1-2", "proj_dim": 8, "hidden_dim": 16}, "future-prediction": FP})
    assert list(model.targets) == ["future-prediction"]
    ema = model.targets["future-prediction"]
    assert ema.source is model.backbone
    # the optimizer sees no EMA parameter
    cfg = load_config(None, {"steps": 3, "warmup_steps": 1})
    optimizer, _ = make_optimizer(model, cfg)
    in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
    frozen = {id(p) for m in (ema, model.objectives["future-prediction"].target_projector) for p in m.parameters()}
    assert frozen and not (in_opt & frozen)
    assert in_opt == {id(p) for p in model.parameters() if p.requires_grad}

    batch = fake_batch(6, model.plan, episodes=2, episode_length=30, image_size=(32, 32), seed=1)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    loss, outputs = model(batch)
    loss.backward()
    assert all(p.grad is None for p in ema.parameters())
    assert {"emb_std", "effective_rank", "pred_loss"} <= set(outputs["future-prediction"].metrics)
    optimizer.step()
    online = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    momenta = model.update_targets(1, cfg.steps)
    assert momenta == {"objectives.future-prediction.target_projector": 0.5, "targets.future-prediction": 0.5}
    for k, v in ema.module.named_parameters():
        assert torch.equal(v, 0.5 * before[f"module.{k}"] + 0.5 * online[k]), k
    assert "targets.future-prediction.module.model.stem.0.weight" in model.state_dict()


def test_target_slot_out_of_range_is_a_usage_error():
    class Bad(ssltk.Objective):
        name = "bad-target"

        def target_encoder(self):
            return TargetRequest((3,))

    reg = Registry(get_plugin_manager(load=["ssltk"]))
    fam, name = reg.backbone("test_convnext")
    bb = fam.obj.create(name, img_size=32)
    obj = Bad(bb.num_features)
    plan = ViewPlan.build({"bad-target": obj.views()}, ["front"])
    with pytest.raises(ssltk.UsageError, match="slot"):
        SSLModel(bb, {"bad-target": obj}, {"bad-target": 1.0}, plan, (0.5,) * 3, (0.5,) * 3)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model_with({"future-prediction": FP})
        full = fake_batch(8, model.plan, episodes=3, episode_length=30, image_size=(32, 32), seed=3)
        batch = {k: (v[rank * 4:(rank + 1) * 4] if isinstance(v, torch.Tensor) else v) for k, v in full.items()}
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        loss, _ = ddp(batch)
        loss.backward()
        opt.step()
        model.update_targets(1, 2)
        state = {k: v for k, v in model.state_dict().items() if ".module." in k}
        torch.save(state, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_ddp_ranks_update_identical_ema_targets_without_communication(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert any(k.startswith("targets.") for k in a) and any("target_projector" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between ranks"
    fresh = _model_with({"future-prediction": FP})
    moved = [k for k, v in fresh.state_dict().items() if k in a and k.endswith("weight") and not torch.equal(v, a[k])]
    assert moved  # the update did something


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
EMA_MD = ROOT / "docs" / "ema.md"


def test_docs_ema_excerpts_and_links_are_true():
    import re

    text = EMA_MD.read_text()
    excerpts = re.findall(r"<!-- excerpt: ?(.*?) ?-->\n```[a-z]*\n(.*?)\n```", text, re.S)
    assert len(excerpts) >= 3
    for path, body in excerpts:
        assert body in (ROOT / path).read_text(), f"docs/ema.md: excerpt of {path} is out of date:\n{body}"
    for target in re.findall(r"\]\((\.\.?/[^)#]+|[\w\-/]+\.md)", text):
        assert (EMA_MD.parent / target).exists(), f"broken link in docs/ema.md: {target}"
    for name in ("update", "momentum_at", "state_dict", "update_all"):
        assert f"`ema.{name}(" in text or f"`EMA.{name}(" in text, name
    assert "(ema.md)" in (ROOT / "docs" / "plugins.md").read_text()


def test_custom_loop_example_runs(capsys):
    import runpy

    metrics = runpy.run_path(str(ROOT / "examples" / "ema_custom_loop.py"))["main"]()
    assert metrics["restored"] == 1.0 and metrics["momentum"] == 1.0 and metrics["last_step"] == 30
    assert metrics["loss"] < 0.5
    assert "restored exactly: True" in capsys.readouterr().out
