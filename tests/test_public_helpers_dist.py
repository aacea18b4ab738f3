"""``ssltk.gather_with_grad``, ``gather_nograd``, ``all_reduce_sum``, ``ddp_mean`` and ``world`` on 2 gloo ranks.

Rank 0 holds 3 rows, rank 1 holds 4 (different counts on purpose); a third
case gives rank 0 no rows at all. Each check compares with closed forms or with
the single-process computation on the concatenated global batch.
"""

from __future__ import annotations

import pytest
import torch

import ssltk
from dist_helpers import run_ranks

pytestmark = pytest.mark.dist

ROWS = (3, 4)
D = 2


def global_x() -> torch.Tensor:
    return torch.arange(sum(ROWS) * D, dtype=torch.float64).view(-1, D) / 10


def weights(rank: int) -> torch.Tensor:
    """A different weight matrix per rank for the gathered rows: rank r's loss is sum(w_r * gathered)."""
    return torch.arange(sum(ROWS) * D, dtype=torch.float64).view(-1, D) * (rank + 1)


def _local(rank: int, rows=ROWS) -> slice:
    lo = sum(rows[:rank])
    return slice(lo, lo + rows[rank])


def _helpers(rank: int, world: int) -> dict:
    out: dict = {"world": ssltk.world()}
    x = global_x()[_local(rank)].clone().requires_grad_(True)
    gathered, offset = ssltk.gather_with_grad(x)
    (weights(rank) * gathered).sum().backward()
    out.update(gathered=gathered.detach(), offset=offset, x_grad=x.grad.clone())
    ids = torch.arange(ROWS[rank]) + 100 * rank
    out["ids"], out["ids_offset"] = ssltk.gather_nograd(ids)
    mine = torch.tensor([float(rank + 1)], requires_grad=True)
    summed = ssltk.all_reduce_sum(mine)
    out.update(summed=summed, summed_grad=summed.requires_grad, mine_after=mine.detach().clone())
    # ddp_mean: per-row losses of a shared parameter (what DDP averages), also with an empty rank.
    for name, rows in (("uneven", ROWS), ("empty", (0, 5))):
        theta = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        v = torch.arange(sum(rows), dtype=torch.float64)[_local(rank, rows)]
        loss = ssltk.ddp_mean(theta * v**2)
        loss.backward()
        grad = theta.grad.clone()
        torch.distributed.all_reduce(grad)  # DDP: mean of the ranks' parameter gradients
        value = loss.detach().clone()
        torch.distributed.all_reduce(value)
        out[name] = {"loss_mean": value / world, "grad_mean": grad / world}
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return run_ranks(_helpers, str(tmp_path_factory.mktemp("helpers")))


def test_world_is_rank_and_size(ranks):
    assert [r["world"] for r in ranks] == [(0, 2), (1, 2)]


def test_gather_with_grad_values_offsets_and_gradients(ranks):
    for rank, r in enumerate(ranks):
        torch.testing.assert_close(r["gathered"], global_x())
        assert r["offset"] == sum(ROWS[:rank])
        # d(sum_r L_r)/dx_s = sum_r w_r[rows of s]: the other rank's pull is included.
        want = (weights(0) + weights(1))[_local(rank)]
        torch.testing.assert_close(r["x_grad"], want)


def test_gather_nograd_concatenates_uneven_ranks(ranks):
    want = torch.cat([torch.arange(3), torch.arange(4) + 100])
    for rank, r in enumerate(ranks):
        assert torch.equal(r["ids"], want) and r["ids_offset"] == sum(ROWS[:rank])


def test_all_reduce_sum_is_detached_and_leaves_its_input(ranks):
    for rank, r in enumerate(ranks):
        assert r["summed"].item() == 3.0 and r["summed_grad"] is False
        assert r["mine_after"].item() == rank + 1


@pytest.mark.parametrize("case,rows", [("uneven", ROWS), ("empty", (0, 5))])
def test_ddp_mean_gives_the_global_batch_loss_and_gradient(ranks, case, rows):
    v = torch.arange(sum(rows), dtype=torch.float64)
    theta = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    ref = (theta * v**2).mean()
    ref.backward()
    for r in ranks:
        torch.testing.assert_close(r[case]["loss_mean"], ref.detach())
        torch.testing.assert_close(r[case]["grad_mean"], theta.grad)
    # A plain per-rank mean would be wrong with uneven ranks (the reason for ddp_mean).
    naive = sum((theta * v[_local(k, rows)] ** 2).mean() for k in range(2) if rows[k]) / 2
    assert abs(naive.item() - ref.item()) > 1e-3
