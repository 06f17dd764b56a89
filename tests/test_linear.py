"""geomcheck's exact top-k PCA and Newton probe compute what scikit-learn's general solvers compute."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_info

from geomcheck.properties.linear import TopPCA, fit_logistic, held_out_accuracy
from geomcheck.properties.threads import one_blas_thread


def _data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / np.sqrt(d) + rng.normal(size=d)


@pytest.mark.parametrize("shape", [(300, 40), (30, 200)])  # through the d x d and the n x n matrix
def test_top_pca_is_sklearn_s_exact_pca(shape):
    x = _data(*shape)
    ours, theirs = TopPCA(5).fit(x), PCA(5, svd_solver="full").fit(x)
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(ours.components_, theirs.components_, atol=1e-8)  # same signs too
    fresh = _data(7, shape[1], seed=1)
    np.testing.assert_allclose(ours.transform(fresh), theirs.transform(fresh), atol=1e-8)


@pytest.mark.parametrize("d", [3, 8, 80])  # Newton up to 64 features, lbfgs above
def test_logistic_fit_minimises_sklearn_s_objective(d):
    rng = np.random.default_rng(d)
    x = rng.normal(size=(400, d))
    y = (x[:, 0] + x[:, 1 % d] + rng.normal(size=400) > 0).astype(float)
    w, b = fit_logistic(x, y)
    reference = LogisticRegression(tol=1e-12, max_iter=10_000).fit(x, y)
    tolerance = 1e-6 if d <= 64 else 1e-2  # wide inputs: lbfgs at its default tolerance (1e-4)
    np.testing.assert_allclose(w, reference.coef_[0], atol=tolerance)
    assert b == pytest.approx(reference.intercept_[0], abs=tolerance)


@pytest.mark.parametrize("components", [None, 4])
def test_held_out_accuracy_matches_the_sklearn_pipeline(components):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 30)) * np.linspace(3.0, 0.3, 30)  # the label lives in the two widest directions
    y = (x[:, 0] + x[:, 1] + 3.0 * rng.normal(size=600) > 0).astype(int)
    groups = np.repeat(np.arange(12), 50)
    steps = [PCA(components, svd_solver="full")] if components else []
    reference = cross_val_score(make_pipeline(*steps, LogisticRegression(tol=1e-10, max_iter=10_000)), x, y, groups=groups,
                                cv=GroupKFold(n_splits=4), scoring="balanced_accuracy").mean()
    ours = held_out_accuracy(x, y, groups, 4, components)
    assert 0.55 < ours < 0.99  # a probe with something to learn and something to miss
    assert ours == pytest.approx(reference, abs=1e-9)


def test_held_out_accuracy_needs_as_many_groups_as_folds():
    x = _data(40, 5)
    assert np.isnan(held_out_accuracy(x, np.arange(40) % 2, np.arange(40) % 3, 4, None))


def test_one_blas_thread_holds_inside_the_block_only():
    def blas_threads():
        return {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    before = blas_threads()
    with one_blas_thread():
        assert blas_threads() == {1}
    assert blas_threads() == before


def test_held_out_decisions_match_sklearn_s_cross_val_predict():
    from sklearn.model_selection import cross_val_predict

    from geomcheck.properties.linear import held_out_decisions

    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 20)) * np.linspace(2.0, 0.2, 20)
    y = (x[:, 0] - x[:, 2] + rng.normal(size=400) > 0).astype(int)
    groups = np.repeat(np.arange(8), 50)
    reference = cross_val_predict(make_pipeline(PCA(6, svd_solver="full"), LogisticRegression(tol=1e-10, max_iter=10_000)), x, y,
                                  groups=groups, cv=GroupKFold(n_splits=4), method="decision_function")
    np.testing.assert_allclose(held_out_decisions(x, y, groups, 4, 6), reference, atol=1e-6)
    assert held_out_decisions(x, y, np.arange(400) % 3, 4, 6) is None


@pytest.mark.parametrize("exact_width", [1024, 8])  # the d x d pass reused, and (narrower than the data) the Krylov basis
def test_a_probe_reusing_the_pca_s_work_gives_the_same_decisions(exact_width, monkeypatch):
    from geomcheck.properties import spectral
    from geomcheck.properties.linear import held_out_decisions

    monkeypatch.setattr(spectral, "EXACT_WIDTH", exact_width)
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 24)) * np.linspace(2.0, 0.2, 24) + 5.0  # far from the origin: centring matters
    y = (x[:, 0] + rng.normal(size=300) > 5.0).astype(int)
    groups = np.repeat(np.arange(6), 50)
    fitted = TopPCA(4).fit(x)
    assert (fitted.krylov_basis_ is None) == (exact_width >= 24)
    shared = held_out_decisions(x, y, groups, 3, 4, fitted=fitted)
    np.testing.assert_allclose(shared, held_out_decisions(x, y, groups, 3, 4), rtol=1e-9, atol=1e-9)
