"""DDP on CPU (gloo, 2 processes): equal results to one process, and torchrun end-to-end runs."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssltk.batch import Batch
from ssltk.plugins import get_plugin_manager
from ssltk.registry import Registry
from ssltk.testing import fake_batch
from ssltk.testing.shards import write_tiny_shards
from ssltk.train.model import SSLModel
from ssltk.views import ViewPlan

pytestmark = pytest.mark.dist
OBJECTIVES = {"temporal-infonce": ({"dt": "1-4", "proj_dim": 16, "hidden_dim": 32}, 1.0),
              "multi-camera": ({"proj_dim": 16, "hidden_dim": 32}, 0.5)}
LR = 0.5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model() -> SSLModel:
    """A BatchNorm-free backbone (ConvNeXt uses LayerNorm): per-rank BN statistics would differ by design."""
    reg = Registry(get_plugin_manager(load=["ssltk"]))
    fam, name = reg.backbone("test_convnext")
    torch.manual_seed(0)
    bb = fam.obj.create(name, img_size=32)
    objs = {n: reg.objective(n).obj.from_options(bb.num_features, **o) for n, (o, _) in OBJECTIVES.items()}
    plan = ViewPlan.build({n: o.views() for n, o in objs.items()}, ["front", "rear"])
    dc = bb.data_config
    return SSLModel(bb, objs, {n: w for n, (_, w) in OBJECTIVES.items()}, plan, dc["mean"], dc["std"])


def _global_batch(plan: ViewPlan) -> Batch:
    batch = fake_batch(8, plan, episodes=3, episode_length=30, missing=0.1, image_size=(32, 32), seed=3)
    batch["frames"] = torch.randint(0, 256, batch["frames"].shape, generator=torch.Generator().manual_seed(1),
                                    dtype=torch.uint8) * batch["mask"][..., None, None, None]
    return batch


def _shard(batch: Batch, rank: int, world: int) -> Batch:
    B = batch["frames"].shape[0] // world
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            out[k] = v[rank * B:(rank + 1) * B]
        elif k == "ego":
            out[k] = {e: t[rank * B:(rank + 1) * B] for e, t in v.items()}
        else:
            out[k] = v
    return out


def _one_step(model: torch.nn.Module, batch: Batch, params) -> dict[str, torch.Tensor]:
    opt = torch.optim.SGD(params, lr=LR)
    loss, _ = model(batch)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    return grads


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _model()
        batch = _shard(_global_batch(model.plan), rank, world)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        grads = _one_step(ddp, batch, model.parameters())
        grads = {k.removeprefix("module."): v for k, v in grads.items()}
        if rank == 0:
            torch.save({"grads": grads, "weights": model.state_dict()}, out)
    finally:
        dist.destroy_process_group()


def test_ddp_step_equals_single_process_step_on_the_global_batch(tmp_path):
    model = _model()
    ref_grads = _one_step(model, _global_batch(model.plan), model.parameters())
    ref_weights = model.state_dict()

    out = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    assert got["grads"].keys() == ref_grads.keys()
    # Tolerance: float32 sums run in another order across ranks (all_reduce); measured max error is
    # ~1e-6 of each tensor's largest gradient, so 2e-5 of it leaves room. A 1/world_size scaling bug
    # is off by 50%.
    for k, g in ref_grads.items():
        err = (got["grads"][k] - g).abs().max().item()
        assert err <= 2e-5 * g.abs().max().item() + 1e-12, f"gradient of {k}: max error {err:.3g}"
    for k, w in ref_weights.items():
        torch.testing.assert_close(got["weights"][k], w, rtol=0, atol=2e-5 * LR, msg=f"weight {k}")


def _torchrun(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SSLTK_LOAD_PLUGINS": "ssltk"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ssltk", "pretrain", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_torchrun_two_ranks_odd_shards_two_workers_finishes_with_one_bundle(tmp_path):
    shards = tmp_path / "shards"
    # 3 shards for 2 ranks x 2 workers: uneven on purpose; resampled streams must not hang.
    write_tiny_shards(shards, episodes=3, length=10, cameras=("front",), image_size=32, segment_length=10,
                      segments_per_shard=1)
    assert len(list(shards.glob("*.tar"))) == 3
    out = tmp_path / "run"
    res = _torchrun(["--data", str(shards), "--out", str(out), "--steps", "4", "--backbone", "test_resnet",
                     "--image-size", "32", "--batch-size", "8", "--num-workers", "2",
                     "-o", "temporal-infonce", "--set", "temporal-infonce.dt=1-4", "--set", "log_every=1",
                     "--set", "checkpoint_every=2"],
                    timeout=300)  # the bound: a hang fails here instead of blocking CI
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "ssltk.json").read_text())
    assert manifest["world_size"] == 2 and manifest["global_batch"] == 16
    a, b = manifest["data_fingerprints"]
    assert a and b and a != b  # the two ranks read different samples
    from ssltk.bundle import verify_bundle

    assert verify_bundle(out) == []
    assert not list(out.glob(".ssltk-write-*")) and not list(out.glob("*.tmp*"))
    # one objective of weight 1: the logged loss and its per-objective loss are the same all-reduced number
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(abs(r["loss"] - r["loss/temporal-infonce"]) < 1e-6 for r in rows), rows


def _failing_main_worker(rank: int, world: int, port: int, out: str) -> None:
    from ssltk.train.runtime import Runtime, on_main_then_sync

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    rt = Runtime(torch.device("cpu"), None, False, rank=rank, world_size=world)

    def write() -> None:
        raise OSError(28, "No space left on device")

    t0 = time.perf_counter()
    try:
        on_main_then_sync(rt, "writing the bundle", write)
        result = "no error"
    except Exception as exn:  # noqa: BLE001 - recorded for the test
        result = f"{type(exn).__name__}: {exn}"
    on_main_then_sync(rt, "a second step", lambda: None)  # the group is still usable afterwards
    Path(out, f"rank{rank}.txt").write_text(f"{time.perf_counter() - t0:.1f}\n{result}")
    dist.destroy_process_group()


def test_a_rank0_failure_stops_every_rank_at_once(tmp_path):
    """Rank 0 failing to write (disk full) must not leave the others waiting out the barrier timeout."""
    mp.spawn(_failing_main_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    t0, err0 = (tmp_path / "rank0.txt").read_text().split("\n", 1)
    t1, err1 = (tmp_path / "rank1.txt").read_text().split("\n", 1)
    assert err0.startswith("OSError") and "No space left" in err0
    assert err1.startswith("SsltkError") and "rank 0 failed while writing the bundle" in err1
    assert "No space left on device" in err1 and "\n" not in err1
    assert float(t1) < 60  # far below the 120 s group timeout
