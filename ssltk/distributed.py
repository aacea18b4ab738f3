"""Everything that talks to ``torch.distributed``: process group, ranks, collectives.

* :func:`init_process_group` sets up the group when torchrun launched the process
  (``RANK``/``WORLD_SIZE`` set; NCCL on CUDA, else gloo) with a finite timeout.
* :func:`resolve_rank_world` (the data stream's shard split) and :func:`world`
  (an initialised group's view) say who this process is.
* The collectives for objectives, public as ``ssltk.<name>``: :func:`gather_with_grad`,
  :func:`gather_nograd`, :func:`all_reduce_sum`, :func:`ddp_mean`; and for the
  trainer: :func:`mean_over_ranks`, :func:`all_gather_object`, :func:`on_main_then_sync`.

Each is the identity (or a plain call) with one process, so single-process code
never needs a ``if distributed`` of its own. Why ``gather_with_grad`` sums the
key gradients over ranks: ``docs/losses.md``.
"""

from __future__ import annotations

import datetime
import os
from typing import Any, Callable

import torch
import torch.distributed as dist

from ssltk.errors import SsltkError, UsageError, one_line

__all__ = [
    "all_gather_object",
    "all_reduce_sum",
    "ddp_mean",
    "gather_nograd",
    "gather_with_grad",
    "init_process_group",
    "mean_over_ranks",
    "on_main_then_sync",
    "resolve_rank_world",
    "world",
]


# -- who am I -----------------------------------------------------------------------
def init_process_group(device_name: str, timeout_s: int = 600) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises the process group when launched by torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1, 0
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda") or device_name.startswith("cuda")
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(local)
        # A finite timeout: a crashed rank makes the others fail instead of hanging forever.
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return rank, size, local


def resolve_rank_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values, else env ``RANK``/``WORLD_SIZE``, else an initialised torch.distributed, else (0, 1)."""
    if rank is None and world_size is None:
        if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        else:
            rank, world_size = world()
    rank, world_size = int(rank or 0), int(world_size or 1)
    if not 0 <= rank < world_size:
        raise UsageError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


def world(group=None) -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group), dist.get_world_size(group)
    return 0, 1


# -- collectives for objectives ---------------------------------------------------------
def _sizes(n: int, device, group) -> list[int]:
    _, w = world(group)
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = [torch.zeros_like(mine) for _ in range(w)]
    dist.all_gather(out, mine, group=group)
    return [int(s) for s in out]


def _all_gather_rows(x: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0 (ranks may hold different row counts)."""
    most = max(sizes)
    padded = x.new_zeros((most,) + tuple(x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous(), group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradient over ranks, then keeps the local slice.

    Every rank's loss uses every rank's rows as keys, so the gradient of the
    *global* objective w.r.t. my rows is the sum of what each rank's loss sends
    them: all_reduce(SUM). DDP then divides parameter gradients by the world
    size, matching a global loss defined as the mean of the per-rank losses.
    Taking only the local slice (no all_reduce) would drop the other ranks'
    contributions; summing in DDP without its averaging would scale by W.
    """

    @staticmethod
    def forward(ctx, x, sizes, rank, group):  # noqa: D401
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        return _all_gather_rows(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None, None


def gather_with_grad(x: torch.Tensor, group=None) -> tuple[torch.Tensor, int]:
    """Rows of ``x`` from every rank (autograd-aware) and the offset of the local rows.

    With one process (or torch.distributed not initialised) returns ``(x, 0)``.
    """
    rank, w = world(group)
    if w == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device, group)
    return _GatherWithGrad.apply(x, sizes, rank, group), sum(sizes[:rank])


def gather_nograd(x: torch.Tensor, group=None) -> tuple[torch.Tensor, int]:
    """Like :func:`gather_with_grad` for tensors without gradients (ids, masks, counts)."""
    rank, w = world(group)
    if w == 1:
        return x, 0
    sizes = _sizes(x.shape[0], x.device, group)
    return _all_gather_rows(x, sizes, group), sum(sizes[:rank])


def all_reduce_sum(x: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of ``x`` over ranks, **without gradient** (counts, statistics); ``x`` itself with one process.

    The result is a new detached tensor (``x`` is not modified). To backpropagate
    through values of other ranks, gather them with :func:`gather_with_grad`.
    """
    _, w = world(group)
    if w == 1:
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x


def ddp_mean(values: torch.Tensor, group=None) -> torch.Tensor:
    """The per-rank loss whose average over ranks is the mean of ``values`` over every rank's rows.

    ``values``: ``[N]`` per-row losses of this rank (with gradient; ranks may hold
    different ``N``, also 0). Returns ``W · Σ values / N_global`` with ``N_global``
    the number of rows of all ranks (one all-reduce): DDP averages parameter
    gradients over the ``W`` ranks, so the averaged gradient is that of the
    global-batch mean, exactly. With one process it is ``values.mean()``; with no
    row anywhere an exact 0 that is still connected to the graph.
    """
    values = values.reshape(-1)
    _, w = world(group)
    count = torch.tensor(float(values.numel()), dtype=torch.float64, device=values.device)
    total = all_reduce_sum(count, group)
    return values.sum() * (w / total.clamp(min=1.0)).to(values.dtype)


# -- collectives for the trainer ----------------------------------------------------------
def mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over ranks (no gradient); ``x`` itself with one process."""
    _, w = world()
    return x if w == 1 else all_reduce_sum(x) / w


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` with one process."""
    _, w = world()
    if w == 1:
        return [obj]
    out: list[Any] = [None] * w
    dist.all_gather_object(out, obj)
    return out


def on_main_then_sync(rt: Any, what: str, fn: Callable[[], Any]) -> None:
    """Run ``fn`` on rank 0 only; then every rank learns whether it worked.

    ``rt``: the run's ``ssltk.train.runtime.Runtime`` (``is_main``, ``distributed``,
    ``device``). Replaces ``fn(); barrier()``: if rank 0 fails (disk full, a bad
    path), the other ranks raise at once with rank 0's one-line reason instead of
    waiting out the process-group timeout (10 minutes) at a barrier. Rank 0
    re-raises its own error.
    """
    error: BaseException | None = None
    if rt.is_main:
        try:
            fn()
        except BaseException as exn:  # noqa: BLE001 - reported to the other ranks, then re-raised
            error = exn
    if rt.distributed:
        status = [one_line(error) if error is not None else None]
        # NCCL sends the pickled object through this rank's GPU
        dist.broadcast_object_list(status, src=0, device=rt.device if rt.device.type == "cuda" else None)
        if status[0] is not None and error is None:
            raise SsltkError(f"rank 0 failed while {what} ({status[0]}); this rank stopped too")
    if error is not None:
        raise error
