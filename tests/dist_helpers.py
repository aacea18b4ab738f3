"""Run a function on every rank of a small CPU process group (gloo) and collect what each returns."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable[[int, int], Any], world: int, port: int, path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(fn(rank, world), os.path.join(path, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[[int, int], Any], path: str, world: int = 2) -> list[Any]:
    """``[fn(rank, world) for each rank]``, each run in its own process of one gloo group.

    ``fn`` must be a module-level function (spawn pickles it). Fork when the parent is
    single-threaded (well under a second), spawn otherwise (re-imports torch, ~5-10 s).
    """
    single = threading.active_count() == 1 and torch.get_num_threads() == 1
    method = "fork" if single and "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(fn, world, free_port(), path), nprocs=world, join=True, start_method=method)
    return [torch.load(os.path.join(path, f"rank{r}.pt"), weights_only=False) for r in range(world)]
