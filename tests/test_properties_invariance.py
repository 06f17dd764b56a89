"""Property-based checks: promised invariances hold and planted structure of any strength is recovered."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_fixtures import (
    PLANTED,
    first_position_outlier,
    helix_table,
    separated_sites,
    transformed,
    with_table,
)
from scipy.stats import ortho_group

from geomcheck.properties import REGISTRY

FAST = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Probes refit a logistic regression on rotated data: the optimum is the same, the solver's stopping point not quite.
TOLERANCE = {"attn_mlp_separation": 0.03}
# Metrics that are norms, not ratios, scale with the hidden space (and are invariant to rotation only).
SCALES = {("layer_norm_growth", "median_norm")}


def measure(name: str, acts):
    prop = REGISTRY[name]
    return prop.measure(acts, prop.params(), tuple(range(acts.n_blocks)))


@pytest.mark.parametrize("name", sorted(REGISTRY))
@FAST
@given(seed=st.integers(0, 2**16), log_scale=st.floats(-3, 3))
def test_invariant_to_rotation_and_scale_of_hidden_space(name, seed, log_scale):
    acts = PLANTED[name].build(seed % 7, True)
    matrix = ortho_group.rvs(acts.hidden_size, random_state=seed) * 10.0**log_scale
    before, after = measure(name, acts), measure(name, transformed(acts, matrix))
    assert before.valid and after.valid
    tolerance = TOLERANCE.get(name, 1e-4)
    for metric in before.metrics:
        a, b = before.metric(metric), after.metric(metric)
        factor = 10.0**log_scale if (name, metric) in SCALES else 1.0
        assert b.aggregate == pytest.approx(a.aggregate * factor, abs=tolerance, rel=tolerance, nan_ok=True), metric
        for block, value in a.per_layer.items():
            assert b.per_layer[block] == pytest.approx(value * factor, abs=tolerance, rel=tolerance, nan_ok=True), (metric, block)


@FAST
@given(seed=st.integers(0, 2**16), cycles=st.floats(1.0, 4.0), noise=st.floats(0.0, 0.1))
def test_noisy_helix_has_small_residual(seed, cycles, noise):
    result = measure("positional_helix", with_table(helix_table(seed, cycles, noise), seed))
    assert result.metric("helix_residual").aggregate < 0.15
    assert result.metric("pc0_cycles").aggregate == pytest.approx(cycles, rel=0.1)


@FAST
@given(seed=st.integers(0, 2**16))
def test_random_table_has_large_residual(seed):
    table = np.random.default_rng(seed).standard_normal((256, 24))
    assert measure("positional_helix", with_table(table, seed)).metric("helix_residual").aggregate > 0.7


@FAST
@given(seed=st.integers(0, 2**16), ratio=st.floats(2.0, 500.0))
def test_planted_first_position_ratio_is_recovered(seed, ratio):
    result = measure("first_position_norm", first_position_outlier(seed, ratio))
    assert result.metric("ratio").aggregate == pytest.approx(ratio, rel=1e-4)
    for value in result.metric("ratio").per_layer.values():
        assert value == pytest.approx(ratio, rel=1e-4)
    assert result.metric("onset_layer").aggregate == (0.0 if ratio > 20 else pytest.approx(float("nan"), nan_ok=True))


@FAST
@given(seed=st.integers(0, 2**16), separation=st.floats(2.5, 6.0))
def test_separated_clouds_are_separated(seed, separation):
    result = measure("attn_mlp_separation", separated_sites(seed, separation))
    assert result.metric("probe_pca_accuracy").aggregate > 0.9
    assert result.metric("probe_accuracy").aggregate > 0.9


@FAST
@given(seed=st.integers(0, 2**16))
def test_overlapping_clouds_are_not(seed):
    result = measure("attn_mlp_separation", separated_sites(seed, 0.0))
    assert result.metric("probe_pca_accuracy").aggregate < 0.65
    assert result.metric("fisher_ratio").aggregate < 0.2
