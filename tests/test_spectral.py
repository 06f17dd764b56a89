"""The wide-model route to the top principal directions gives the exact route's answer, linear in the width.

Wider than ``spectral.EXACT_WIDTH`` the PCA, and every training fold of the held-out probe, iterate on
the data instead of decomposing a d x d matrix. The tests lower that width so both routes run on the
same small data: the answers must agree to the solver's tolerance wherever the spectrum has a gap.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from geomcheck.properties import spectral
from geomcheck.properties.linear import TopPCA, held_out_decisions
from geomcheck.properties.spectral import as_tensor, top_covariance_eigen


def decaying(n: int, d: int, seed: int = 0, power: float = 1.0) -> np.ndarray:
    """Rows whose covariance spectrum falls like 1 / i^power: the gapped shape of trained activations."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) / np.arange(1, d + 1) ** (power / 2)) @ basis.T + rng.normal(size=d)


def exact_top(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    centred = x - x.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred / (len(x) - 1))
    return values[::-1][:k], vectors[:, ::-1][:, :k]


def subspace_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.svd(a.T @ b, compute_uv=False)


@pytest.mark.parametrize("shape", [(600, 200), (150, 400)])  # more rows than width, and fewer
def test_the_krylov_route_finds_the_exact_top_eigenpairs(shape):
    x = decaying(*shape)
    values, vectors = exact_top(x, 8)
    found = top_covariance_eigen(as_tensor(x - x.mean(axis=0)), 8, exact_width=16)
    assert found.iterations >= 1 and found.converged
    np.testing.assert_allclose(found.values.numpy(), values, rtol=1e-7)
    assert subspace_cosines(found.vectors.numpy(), vectors).min() > 1 - 1e-9


def test_a_shift_recentres_without_copying_the_rows():
    x = decaying(500, 120)
    centred = x - x.mean(axis=0)
    rows = centred[:300]  # a training fold, centred about the whole data's mean
    direct = top_covariance_eigen(as_tensor(rows - rows.mean(axis=0)), 6, exact_width=16)
    shifted = top_covariance_eigen(as_tensor(rows), 6, shift=as_tensor(rows.mean(axis=0)), exact_width=16)
    np.testing.assert_allclose(shifted.values.numpy(), direct.values.numpy(), rtol=1e-8)
    assert subspace_cosines(shifted.vectors.numpy(), direct.vectors.numpy()).min() > 1 - 1e-9


def test_same_inputs_give_the_same_bits():
    x = as_tensor(decaying(400, 150, power=0.3))  # a slowly falling spectrum: many restarts
    first, second = (top_covariance_eigen(x, 8, exact_width=16) for _ in range(2))
    assert first.iterations == second.iterations
    assert torch.equal(first.values, second.values) and torch.equal(first.vectors, second.vectors)


def test_a_flat_spectrum_stops_at_the_cycle_cap_with_the_top_subspace_nearly_found():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 120))  # isotropic: no gap, the top-8 directions are ill-defined for any solver
    found = top_covariance_eigen(as_tensor(x - x.mean(axis=0)), 8, exact_width=16)
    values, _ = exact_top(x, 8)
    assert found.iterations <= spectral.MAX_CYCLES
    assert np.all(found.values.numpy() <= values[0] * (1 + 1e-9))  # Ritz values never exceed the true top
    assert found.values.numpy()[0] > 0.97 * values[0]


def test_top_pca_on_a_wide_model_matches_sklearn_s_exact_pca(monkeypatch):
    monkeypatch.setattr(spectral, "EXACT_WIDTH", 16)
    x = decaying(300, 90)
    ours, theirs = TopPCA(5).fit(x), PCA(5, svd_solver="full").fit(x)
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, rtol=1e-8)
    np.testing.assert_allclose(ours.components_, theirs.components_, atol=1e-6)  # same signs too
    assert ours.scatter_ is None


def test_held_out_decisions_on_a_wide_model_match_the_exact_route(monkeypatch):
    rng = np.random.default_rng(5)
    x = decaying(400, 64, seed=5)
    y = (x @ rng.normal(size=64) > 0).astype(float)
    groups = np.arange(400) // 10
    exact = held_out_decisions(x, y, groups, 4, 6)
    monkeypatch.setattr(spectral, "EXACT_WIDTH", 16)
    np.testing.assert_allclose(held_out_decisions(x, y, groups, 4, 6), exact, rtol=1e-6, atol=1e-6)
