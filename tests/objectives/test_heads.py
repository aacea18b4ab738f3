"""Projection heads: shapes, identity/linear variants, masked rows stay zero."""

from __future__ import annotations

import pytest
import torch

from ssltk.heads import ProjectionHead


def test_mlp_linear_and_identity():
    x = torch.randn(5, 8)
    mlp, lin, ident = ProjectionHead(8, 16, 4), ProjectionHead(8, 0, 4), ProjectionHead(8, 16, 0)
    assert mlp(x).shape == (5, 4) and len(list(mlp.parameters())) == 4
    assert lin(x).shape == (5, 4) and len(list(lin.parameters())) == 2
    assert torch.equal(ident(x), x) and ident.out_dim == 8


def test_masked_rows_are_zero_and_get_no_gradient():
    x = torch.randn(4, 6, requires_grad=True)
    valid = torch.tensor([True, False, True, False])
    head = ProjectionHead(6, 8, 3)
    y = head(x, valid)
    assert (y[~valid] == 0).all() and (y[valid] != 0).any()
    torch.testing.assert_close(y[valid], head(x[valid]))
    y.sum().backward()
    assert (x.grad[~valid] == 0).all() and (x.grad[valid] != 0).any()


def test_bad_dims():
    with pytest.raises(ValueError):
        ProjectionHead(0, 4, 4)
    with pytest.raises(ValueError):
        ProjectionHead(4, -1, 4)
