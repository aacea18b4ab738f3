"""Closed-form ridge regression with standardisation and a cross-validated alpha.

``fit_ridge(X, Y, groups)`` standardises ``X`` with the training mean and
standard deviation, centres ``Y``, and picks one ``alpha`` per target column by
K-fold cross-validation over *groups* (episodes: neighbouring frames are
near-duplicates, so frame-level folds would favour too little regularisation).

All alphas share one eigendecomposition per fold: with ``X = U S Vᵀ`` the ridge
solution is ``W(α) = V diag(s / (s² + α)) Uᵀ Y``. The smaller of ``XᵀX`` (d × d)
and ``XXᵀ`` (n × n) is decomposed, so the cost is ``O(n·d·min(n, d))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# alpha = ALPHA_GRID * n_train: standardised features make XᵀX scale with n.
ALPHA_GRID = 10.0 ** np.arange(-5.0, 3.01, 0.5)


@dataclass
class RidgeModel:
    """A fitted ridge map ``Y ≈ ((X - mean) / scale) @ W + y_mean``."""

    mean: np.ndarray
    scale: np.ndarray
    W: np.ndarray  # [d, k]
    y_mean: np.ndarray  # [k]
    alphas: np.ndarray  # [k] chosen alpha per target

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = torch.from_numpy(np.ascontiguousarray((np.asarray(X, np.float64) - self.mean) / self.scale))
        return (Z @ torch.from_numpy(self.W)).numpy() + self.y_mean


class _Solver:
    """Ridge solutions for many alphas from one decomposition of the (standardised) training X.

    The heavy algebra runs in torch (float64): it follows ``torch.set_num_threads``,
    while numpy's BLAS would spin extra threads that crawl on a busy machine.
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray) -> None:
        n, d = X.shape
        X_t, Y_t = torch.from_numpy(np.ascontiguousarray(X, np.float64)), torch.from_numpy(np.ascontiguousarray(Y, np.float64))
        self.X = X_t
        if d <= n:
            lam, V = torch.linalg.eigh(X_t.T @ X_t)  # V: right singular vectors
            self.primal, self.V = True, V
            self.B = V.T @ (X_t.T @ Y_t)  # [r, k]
        else:
            lam, U = torch.linalg.eigh(X_t @ X_t.T)  # U: left singular vectors
            self.primal, self.U = False, U
            self.B = U.T @ Y_t  # [r, k]
        self.lam = lam.clamp_min(0.0)

    def project(self, Xv: np.ndarray) -> torch.Tensor:
        """Validation rows in the eigenbasis: ``[m, r]``."""
        Xv_t = torch.from_numpy(np.ascontiguousarray(Xv, np.float64))
        return Xv_t @ self.V if self.primal else (Xv_t @ self.X.T) @ self.U

    def predict(self, P: torch.Tensor, alpha: float) -> np.ndarray:
        """Predictions for projected rows ``P`` at one alpha."""
        return (P @ (self.B / (self.lam + alpha)[:, None])).numpy()

    def weights(self, alphas: np.ndarray) -> np.ndarray:
        """``W[d, k]`` with column ``j`` solved at ``alphas[j]``."""
        inv = 1.0 / (self.lam[:, None] + torch.as_tensor(alphas, dtype=torch.float64)[None, :])  # [r, k]
        if self.primal:
            return (self.V @ (self.B * inv)).numpy()
        return (self.X.T @ (self.U @ (self.B * inv))).numpy()


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def group_folds(groups: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold id per row: whole groups per fold (round-robin over sorted groups).

    With a single group the rows are cut into ``n_folds`` contiguous blocks instead.
    """
    uniq = list(dict.fromkeys(np.asarray(groups).tolist()))
    if len(uniq) >= 2:
        k = min(n_folds, len(uniq))
        fold_of = {g: i % k for i, g in enumerate(sorted(uniq))}
        return np.array([fold_of[g] for g in np.asarray(groups).tolist()], dtype=np.int64)
    n = len(groups)
    return np.minimum(np.arange(n) * n_folds // max(n, 1), n_folds - 1)


def choose_alpha(X: np.ndarray, Y: np.ndarray, folds: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Per-column alpha minimising the cross-validated squared error (``X`` already standardised)."""
    errors = np.zeros((len(alphas), Y.shape[1]))
    for f in np.unique(folds):
        tr, va = folds != f, folds == f
        if tr.sum() < 2 or va.sum() < 1:
            continue
        mu, sc = _standardise(X[tr])
        Xt, Xv = (X[tr] - mu) / sc, (X[va] - mu) / sc
        ym = Y[tr].mean(axis=0)
        solver = _Solver(Xt, Y[tr] - ym)
        P = solver.project(Xv)
        for a, alpha in enumerate(alphas):
            errors[a] += ((solver.predict(P, alpha) + ym - Y[va]) ** 2).sum(axis=0)
    return alphas[np.argmin(errors, axis=0)]


def fit_ridge(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    n_folds: int = 4,
    alpha_grid: np.ndarray = ALPHA_GRID,
) -> RidgeModel:
    """Fit ridge ``Y ≈ f(X)`` with alpha per column chosen by grouped K-fold CV on ``(X, Y)``."""
    X = np.asarray(X, np.float64)
    Y = np.asarray(Y, np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    n = X.shape[0]
    if n < 3:
        raise ValueError(f"ridge needs at least 3 training rows, got {n}")
    groups = np.zeros(n) if groups is None else np.asarray(groups)
    alphas = np.asarray(alpha_grid, np.float64) * n
    folds = group_folds(groups, n_folds)
    chosen = choose_alpha(X, Y, folds, alphas) if len(np.unique(folds)) >= 2 else np.full(Y.shape[1], alphas[len(alphas) // 2])
    mean, scale = _standardise(X)
    y_mean = Y.mean(axis=0)
    solver = _Solver((X - mean) / scale, Y - y_mean)
    return RidgeModel(mean=mean, scale=scale, W=solver.weights(chosen), y_mean=y_mean, alphas=chosen)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column, ``1 - SSE / SST`` around the test mean (can be negative)."""
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    sse = ((y_true - y_pred) ** 2).sum(axis=0)
    sst = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - sse / sst
    return np.where(sst > 0, r2, np.where(sse <= 1e-12, 1.0, 0.0))


def average_displacement_error(true_xy: np.ndarray, pred_xy: np.ndarray) -> float:
    """Mean Euclidean error over rows and horizons; inputs ``[N, H, 2]`` (metres)."""
    return float(np.linalg.norm(np.asarray(true_xy) - np.asarray(pred_xy), axis=-1).mean())
