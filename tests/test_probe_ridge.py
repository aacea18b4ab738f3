"""Ridge regression for the probe: closed form vs a naive solve, R² and ADE values, grouped CV."""

from __future__ import annotations

import numpy as np
import pytest

from ssltk.probe.ridge import (
    ALPHA_GRID,
    SCALE_FLOOR,
    _Solver,
    average_displacement_error,
    choose_alpha,
    fit_ridge,
    group_folds,
    r2_score,
)


def naive_ridge(X, Y, alpha):
    """(XᵀX + αI)⁻¹ XᵀY by a direct solve."""
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ Y)


@pytest.mark.parametrize("n,d", [(40, 7), (7, 40)])  # primal (d <= n) and dual (n < d) forms
@pytest.mark.parametrize("alpha", [1e-3, 0.5, 30.0])
def test_solver_matches_naive_solution(n, d, alpha):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, 3))
    solver = _Solver(X, Y)
    W = solver.weights(np.full(3, alpha))
    np.testing.assert_allclose(W, naive_ridge(X, Y, alpha), rtol=1e-6, atol=1e-9)


def naive_cv_errors(Z, Y, folds, alpha):
    """Refit ridge with an intercept on every fold's complement (fixed features), sum the held-out squared errors."""
    err = np.zeros(Y.shape[1])
    for f in np.unique(folds):
        tr, va = folds != f, folds == f
        zm, ym = Z[tr].mean(0), Y[tr].mean(0)
        W = naive_ridge(Z[tr] - zm, Y[tr] - ym, alpha)
        err += (((Z[va] - zm) @ W + ym - Y[va]) ** 2).sum(0)
    return err


@pytest.mark.parametrize("n,d", [(48, 7), (24, 60)])  # primal and dual forms
def test_cv_without_refits_equals_refitting_every_fold(n, d):
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(n, d)) + 3.0
    Y = Z[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(size=(n, 2)) + 5.0
    folds = group_folds(np.repeat(np.arange(8), n // 8), 4)
    alphas = np.array([1e-3, 0.3, 10.0, 1e3])
    solver = _Solver(Z - Z.mean(0), Y - Y.mean(0))
    fast = solver.cv_errors(folds, alphas)
    for a, alpha in enumerate(alphas):
        np.testing.assert_allclose(fast[a], naive_cv_errors(Z, Y, folds, alpha), rtol=1e-7)


def test_per_column_alphas_solve_each_column_at_its_own_alpha():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 6)), rng.normal(size=(30, 2))
    W = _Solver(X, Y).weights(np.array([0.1, 50.0]))
    np.testing.assert_allclose(W[:, 0], naive_ridge(X, Y[:, :1], 0.1)[:, 0], rtol=1e-6)
    np.testing.assert_allclose(W[:, 1], naive_ridge(X, Y[:, 1:], 50.0)[:, 0], rtol=1e-6)


def test_fit_standardises_features_and_centres_targets():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4)) * [1, 100, 0.01, 5] + [3, -50, 7, 0]
    Y = X @ [1.0, 0.02, 300.0, -0.4] + 12.0
    model = fit_ridge(X, Y, np.repeat(np.arange(6), 10))
    scale = np.maximum(X.std(0), SCALE_FLOOR * np.median(X.std(0)))  # the 0.01-scale feature is floored
    assert scale[2] > X.std(0)[2]
    Z = (X - X.mean(0)) / scale
    W = naive_ridge(Z, (Y - Y.mean())[:, None], model.alphas[0])
    np.testing.assert_allclose(model.predict(X)[:, 0], Z @ W[:, 0] + Y.mean(), rtol=1e-8)
    assert np.isclose(model.predict(X.mean(0, keepdims=True))[0, 0], Y.mean())


def test_feature_equal_to_target_gives_r2_of_one():
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    X = np.stack([y, rng.normal(size=200)], 1)  # the truth plus a noise column
    groups = np.repeat(np.arange(10), 20)
    train = groups < 7
    model = fit_ridge(X[train], y[train], groups[train])
    assert r2_score(y[~train], model.predict(X[~train]))[0] > 0.999


def test_shuffled_features_give_r2_near_zero():
    rng = np.random.default_rng(4)
    y = rng.normal(size=300)
    X = np.stack([y, y**2, np.sin(y)], 1)[rng.permutation(300)]  # the relation is destroyed
    X = np.concatenate([X, rng.normal(size=(300, 20))], 1)
    groups = np.repeat(np.arange(10), 30)
    train = groups < 7
    model = fit_ridge(X[train], y[train], groups[train])
    assert r2_score(y[~train], model.predict(X[~train]))[0] < 0.05


def test_cv_picks_small_alpha_without_noise_and_large_alpha_for_pure_noise():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 30))
    folds = group_folds(np.repeat(np.arange(6), 20), 4)
    alphas = ALPHA_GRID * 120
    clean = X @ rng.normal(size=30)
    noise = rng.normal(size=120)
    chosen = choose_alpha(X, np.stack([clean, noise], 1), folds, alphas)
    assert chosen[0] == alphas[0]
    assert chosen[1] >= alphas[len(alphas) // 2]


def test_group_folds_keep_groups_whole():
    groups = np.array(["b", "a", "c", "a", "b", "d", "e", "c"])
    folds = group_folds(groups, 3)
    for g in set(groups):
        assert len(set(folds[groups == g])) == 1
    assert set(folds) == {0, 1, 2}


def test_group_folds_cut_a_single_group_into_blocks():
    folds = group_folds(np.zeros(10), 4)
    assert list(folds) == sorted(folds) and set(folds) == {0, 1, 2, 3}


def test_r2_closed_form_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert r2_score(y, y)[0] == 1.0
    assert r2_score(y, np.full(4, y.mean()))[0] == 0.0
    assert np.isclose(r2_score(y, y + 1.0)[0], 1 - 4.0 / 5.0)  # SSE 4, SST 5
    assert r2_score(np.ones(3), np.ones(3))[0] == 1.0  # constant truth, exact prediction
    assert r2_score(np.ones(3), np.zeros(3))[0] == 0.0  # constant truth, wrong prediction: no variance to explain


def test_ade_is_mean_euclidean_error():
    true = np.zeros((2, 2, 2))
    pred = np.array([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 2.0]]])
    assert average_displacement_error(true, pred) == pytest.approx((5 + 0 + 1 + 2) / 4)


def test_fit_rejects_too_few_rows():
    with pytest.raises(ValueError):
        fit_ridge(np.zeros((2, 3)), np.zeros(2))


def test_targets_with_nearly_the_same_rows_share_one_fit():
    from ssltk.probe.evaluate import _column_groups

    Y = np.ones((100, 4))
    Y[90:, 1] = np.nan  # loses 10%: joins column 0
    Y[80:, 2] = np.nan  # loses 20% overall: still joins
    Y[:60, 3] = np.nan  # a different 40%: its own fit
    groups = _column_groups(Y)
    assert [cols for _, cols in groups] == [[0, 1, 2], [3]]
    assert groups[0][0].sum() == 80 and groups[1][0].sum() == 40


def test_features_nearly_constant_in_training_do_not_blow_up_test_predictions():
    # rarely active ReLU units: each fires twice, weakly, in training and often in test
    rng = np.random.default_rng(8)
    n = 200
    signal = rng.normal(size=(n, 40))
    y = signal @ rng.normal(size=40) + 0.3 * rng.normal(size=n)
    rare = np.zeros((n, 5))
    for j in range(5):
        rare[rng.integers(0, n, 2), j] = 1e-3 * rng.random(2)
    model = fit_ridge(np.concatenate([signal, rare], 1), y, np.repeat(np.arange(10), 20))
    test = np.concatenate([signal[:100], (rng.random((100, 5)) < 0.3) * 0.05], 1)
    assert r2_score(y[:100], model.predict(test))[0] > 0.9  # without the scale floor: about -24
