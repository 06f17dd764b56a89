"""Exact top-k PCA and a held-out logistic probe, cheap enough to repeat in every jackknife replicate.

Why not scikit-learn's ``PCA`` and ``LogisticRegression`` in a cross-validated pipeline: the
separation measurement fits a PCA and a probe per fold, per block and per replicate (over 150 fits
in the default spec run), and there the library's general solvers cost most of the run's time after
the forward passes (docs/performance.md). The quantities are the same, computed for the sizes at hand:

- PCA needs only the top ``k`` (at most 64) directions, so it takes them from a partial symmetric
  eigendecomposition (LAPACK's ``syevr``) of whichever second-moment matrix is smaller, d x d or
  n x n. A fold's training covariance is the full one minus the held-out rows' own, so the folds of
  one probe share a single pass over the data. When both matrices would be wider than
  ``spectral.EXACT_WIDTH`` (d^3 work, the wall at widths of 2048 and more), the same top-k pairs come
  from block Krylov iteration on the data itself (``geomcheck.properties.spectral``), linear in d.
- The probe's objective is scikit-learn's: L2 penalty ``0.5 |w|^2 / C`` plus the summed log-loss, the
  intercept unpenalised. It is strictly convex, so every converged solver lands on the same
  minimiser; for the few features a PCA leaves, Newton's method with a backtracking line search gets
  there in under ten steps. Wider inputs go to scikit-learn's lbfgs, where a d x d Newton step would
  cost more than it saves.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import eigh
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from geomcheck.properties import spectral
from geomcheck.properties.spectral import as_tensor, orient, top_covariance_eigen

NEWTON_MAX_FEATURES = 64  # above this, a Newton step's d x d solve costs more than lbfgs's iterations


def top_eigenvectors(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenvalues (descending) of a symmetric matrix and their eigenvectors (columns)."""
    n = matrix.shape[0]
    k = min(k, n)
    values, vectors = eigh(matrix, subset_by_index=(n - k, n - 1), driver="evr")
    return values[::-1], vectors[:, ::-1]


def _orient(components: np.ndarray) -> np.ndarray:
    """Make each component's largest-|.| entry positive, so repeated fits give the same signs (as sklearn does)."""
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(len(components)), largest])
    return components * np.where(signs == 0, 1.0, signs)[:, None]


class TopPCA(TransformerMixin, BaseEstimator):
    """Exact PCA onto the top ``n_components`` directions; a scikit-learn transformer (fit, transform)."""

    def __init__(self, n_components: int = 2) -> None:
        self.n_components = n_components

    def fit(self, x: np.ndarray, y: object = None) -> TopPCA:
        x = np.asarray(x, dtype=np.float64)
        n, d = x.shape
        k = min(self.n_components, n, d)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        self.scatter_ = self.krylov_basis_ = None
        if min(n, d) > spectral.EXACT_WIDTH:  # both second-moment matrices too wide to decompose: iterate on the data
            eigen = top_covariance_eigen(as_tensor(centred), k)
            # Every Ritz vector found, not only the top k: a probe's training folds over the same rows start here.
            self.krylov_basis_ = eigen.basis if eigen.basis is not None else eigen.vectors
            total = float(np.einsum("ij,ij->", centred, centred)) / max(n - 1, 1)
            self.components_ = orient(eigen.vectors).T.numpy()
            self.explained_variance_ = eigen.values.numpy()
            self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros(k)
            self.n_components_ = k
            return self
        second = centred.T @ centred if d <= n else centred @ centred.T  # the smaller of the two
        # The d x d scatter about the mean, kept for a probe over the same rows (held_out_decisions).
        self.scatter_ = second.copy() if d <= n else None
        second /= max(n - 1, 1)
        total = float(np.trace(second))  # the summed variance, the same from either matrix
        if d <= n:
            values, vectors = top_eigenvectors(second, k)
            components = vectors.T
        else:  # through the n x n Gram matrix: components are the data's combinations along its eigenvectors
            values, vectors = top_eigenvectors(second, k)
            scale = np.sqrt(np.maximum(values, 0.0) * max(n - 1, 1))
            components = (centred.T @ vectors / np.where(scale > 0, scale, 1.0)).T
        self.components_ = _orient(components)
        self.explained_variance_ = np.maximum(values, 0.0)
        self.explained_variance_ratio_ = self.explained_variance_ / total if total > 0 else np.zeros_like(values)
        self.n_components_ = k
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_) @ self.components_.T

    def fit_transform(self, x: np.ndarray, y: object = None) -> np.ndarray:
        return self.fit(x).transform(x)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """Weights and intercept minimising ``0.5 |w|^2 / c + sum log(1 + exp(z)) - y z`` with ``z = x w + b``."""
    n, d = x.shape
    if d > NEWTON_MAX_FEATURES:
        model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        return model.coef_[0].astype(np.float64), float(model.intercept_[0])
    design = np.hstack([x, np.ones((n, 1))])
    penalty = np.full(d + 1, 1.0 / c)
    penalty[-1] = 0.0
    beta = np.zeros(d + 1)

    def objective(b: np.ndarray) -> float:
        z = design @ b
        return float(np.logaddexp(0.0, z).sum() - y @ z + 0.5 * (penalty * b * b).sum())

    value = objective(beta)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ beta)))  # the logistic function without overflow
        gradient = design.T @ (p - y) + penalty * beta
        if np.max(np.abs(gradient)) < 1e-9 * max(1.0, n):
            break
        hessian = (design * (p * (1.0 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        t, decrease = 1.0, float(gradient @ step)
        while True:  # backtracking (Armijo): a full Newton step can overshoot far from the optimum
            candidate = beta - t * step
            new_value = objective(candidate)
            if new_value <= value - 1e-4 * t * decrease or t < 1e-10:
                break
            t *= 0.5
        beta, value = candidate, new_value
    return beta[:-1], float(beta[-1])


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth`` (scikit-learn's balanced_accuracy_score)."""
    return float(np.mean([np.mean(predicted[truth == label] == label) for label in np.unique(truth)]))


def held_out_decisions(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, components: int | None,
                       fitted: TopPCA | None = None) -> np.ndarray | None:
    """Each point's decision value (``x w + b``) from the probe fitted on the GroupKFold folds that held it out.

    With ``components``, the probe sees the exact top-k PCA of its training fold; that fold's covariance
    is the full second moment minus the held-out rows' own, so the folds share one pass over the data.
    Wider than ``EXACT_WIDTH``, each fold iterates on its own rows instead (linear in d), warm-started
    from the full data's directions. ``fitted``: the caller's ``TopPCA`` of the same rows, whose pass
    over the data (``scatter_``) or directions (``krylov_basis_``) the folds then reuse instead of
    computing them again. None when there are fewer groups than folds.
    """
    if len(np.unique(groups)) < folds:
        return None  # too few sequences among these points to hold any out
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    wide = bool(components) and x.shape[1] > spectral.EXACT_WIDTH
    if components:
        x = x - x.mean(axis=0)  # moments about the overall mean stay well conditioned
        if wide:
            rows = as_tensor(x)
            warm = getattr(fitted, "krylov_basis_", None)
            if warm is None:
                full = top_covariance_eigen(rows, components)
                warm = full.basis if full.basis is not None else full.vectors
        else:
            scatter = getattr(fitted, "scatter_", None)
            total_square = x.T @ x if scatter is None else scatter
    decisions = np.empty(len(x))
    for train, test in GroupKFold(n_splits=folds).split(x, y, groups):
        if components:
            n = len(train)
            held = x[test]
            mean = -held.sum(axis=0) / n  # the training rows' mean: the centred rows sum to zero
            if wide:
                fold = top_covariance_eigen(rows[torch.from_numpy(train)], components, shift=torch.from_numpy(mean), start=warm)
                vectors = fold.vectors.numpy()
            else:
                covariance = (total_square - held.T @ held - n * np.outer(mean, mean)) / max(n - 1, 1)
                _, vectors = top_eigenvectors(covariance, min(components, n, x.shape[1]))
            projected = x @ vectors - mean @ vectors  # every row once; no copies of the wide training rows
            train_x, test_x = projected[train], projected[test]
        else:
            train_x, test_x = x[train], x[test]
        w, b = fit_logistic(train_x, y[train])
        decisions[test] = test_x @ w + b
    return decisions


def held_out_accuracy(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, components: int | None,
                      fitted: TopPCA | None = None) -> float:
    """Balanced accuracy of the held-out probe (``held_out_decisions``), averaged over the folds; NaN without enough groups."""
    return decisions_accuracy(held_out_decisions(x, y, groups, folds, components, fitted), y, groups, folds)


def decisions_accuracy(decisions: np.ndarray | None, y: np.ndarray, groups: np.ndarray, folds: int) -> float:
    """The balanced accuracy of held-out ``decisions`` (> 0: label 1) in each GroupKFold fold, averaged; NaN for None."""
    if decisions is None:
        return float("nan")
    y = np.asarray(y, dtype=np.float64)
    predicted = (decisions > 0).astype(np.float64)
    splits = GroupKFold(n_splits=folds).split(decisions, y, groups)
    return float(np.mean([balanced_accuracy(y[test], predicted[test]) for _, test in splits]))
