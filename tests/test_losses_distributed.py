"""Distributed negatives: 2 CPU processes (gloo) reproduce the single-process loss and gradients.

The global batch (7 samples, split 3 + 4 so that ranks hold different row
counts) goes through a tiny linear "backbone" and an objective. Each rank
backpropagates its own loss. The checks:

* mean over ranks of the rank losses == the single-process loss;
* DDP-averaged gradients (mean over ranks) of the linear layer and of the
  projection head == the single-process gradients;
* each rank's input gradient / world size == the single-process input gradient
  of its rows (the global loss is the mean of the rank losses).

With ``gather=False`` the losses differ (local negatives only): the comparison
is sensitive to what is gathered.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ssltk.testing import fake_batch_for
from ssltk_builtins.multi_positive import MultiPositive
from ssltk_builtins.temporal_infonce import TemporalInfoNCE

pytestmark = pytest.mark.dist

WORLD = 2
SPLIT = [(0, 3), (3, 7)]
D_IN, D = 5, 6
CAMERAS = ("front", "left")


def objectives(gather: bool = True) -> dict:
    torch.manual_seed(0)
    return {
        "multi-positive": MultiPositive.from_options(D, clip=3, stride=2, window=2, hidden_dim=8, proj_dim=4, gather=gather),
        "temporal-infonce": TemporalInfoNCE.from_options(D, dt="1-3", guard=2, camera="all", hidden_dim=8, proj_dim=4, gather=gather),
    }


def inputs(name: str, obj) -> tuple[dict, torch.Tensor, torch.nn.Linear]:
    """The same global batch, inputs and linear 'backbone' on every process."""
    batch = fake_batch_for(obj, B=7, cameras=CAMERAS, episodes=2, episode_length=14, missing=0.15, seed=3)
    g = torch.Generator().manual_seed(11)
    x = torch.randn(*batch["mask"].shape, D_IN, generator=g)
    torch.manual_seed(1)
    return batch, x, torch.nn.Linear(D_IN, D)


def slice_batch(batch: dict, lo: int, hi: int) -> dict:
    out = dict(batch)
    for key in ("frames", "mask", "episode", "frame_index", "timestamp", "dt"):
        out[key] = batch[key][lo:hi]
    out["ego"] = {k: v[lo:hi] for k, v in batch.get("ego", {}).items()}
    return out


def run(obj, batch, x, lin) -> dict:
    """Forward + backward; returns the loss and all gradients."""
    x = x.clone().requires_grad_(True)
    emb = lin(x) * batch["mask"][..., None]
    out = obj(emb, batch)
    out.loss.backward()
    grads = {f"lin.{n}": p.grad.clone() for n, p in lin.named_parameters()}
    grads.update({f"head.{n}": p.grad.clone() for n, p in obj.named_parameters()})
    return {"loss": out.loss.detach(), "x": x.grad.clone(), "grads": grads, "metrics": out.metrics}


def _worker(rank: int, port: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        results = {}
        for gather in (True, False):
            for name, obj in objectives(gather).items():
                batch, x, lin = inputs(name, obj)
                lo, hi = SPLIT[rank]
                r = run(obj, slice_batch(batch, lo, hi), x[lo:hi], lin)
                loss = r["loss"].clone()
                dist.all_reduce(loss)
                r["loss_mean"] = loss / WORLD
                for g in r["grads"].values():  # what DDP does to parameter gradients
                    dist.all_reduce(g)
                    g /= WORLD
                results[(name, gather)] = r
        torch.save(results, os.path.join(path, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    """Run both variants (gather on/off) in one 2-process group; each rank's results."""
    path = tmp_path_factory.mktemp("dist")
    # fork starts in well under a second; spawn re-imports torch in each child (~5-10 s here).
    # Fork only from a single-threaded parent (no Python threads, one torch thread): forking a
    # process with running threads can deadlock the child.
    single = threading.active_count() == 1 and torch.get_num_threads() == 1
    method = "fork" if single and "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(free_port(), str(path)), nprocs=WORLD, join=True, start_method=method)
    return [torch.load(path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def single_process() -> dict:
    return {name: run(obj, *inputs(name, obj)) for name, obj in objectives().items()}


def test_gathered_loss_and_gradients_equal_single_process(ranks):
    ref = single_process()
    for name, want in ref.items():
        assert want["metrics"]["anchors"] > 0
        got = [r[(name, True)] for r in ranks]
        torch.testing.assert_close(got[0]["loss_mean"], want["loss"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[0]["loss_mean"], got[1]["loss_mean"])
        for key, g in want["grads"].items():
            torch.testing.assert_close(got[0]["grads"][key], g, rtol=1e-4, atol=1e-6, msg=f"{name}: {key}")
        x_grad = torch.cat([r["x"] for r in got]) / WORLD
        torch.testing.assert_close(x_grad, want["x"], rtol=1e-4, atol=1e-7)
        assert sum(r["metrics"]["anchors"] for r in got) == want["metrics"]["anchors"]


def test_without_gather_only_local_negatives_are_used(ranks):
    ref = single_process()
    for name, want in ref.items():
        got = ranks[0][(name, False)]
        assert abs(got["loss_mean"].item() - want["loss"].item()) > 1e-3
        assert got["metrics"]["neg_per_anchor"] < want["metrics"]["neg_per_anchor"]


def test_one_process_gather_is_a_no_op():
    from ssltk.losses import gather_nograd, gather_with_grad

    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) == (x, 0) and gather_nograd(x)[0] is x
    on, off = objectives(True)["multi-positive"], objectives(False)["multi-positive"]
    a, b = run(on, *inputs("multi-positive", on)), run(off, *inputs("multi-positive", off))
    torch.testing.assert_close(a["loss"], b["loss"])
    torch.testing.assert_close(a["x"], b["x"])
