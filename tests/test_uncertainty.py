"""Jackknife standard errors: right size on known-variance data, exact leave-one-group-out views, paired errors."""

from __future__ import annotations

import numpy as np

from geomcheck import properties
from geomcheck.capture.activations import Activations, grouped_stats, sequence_groups
from geomcheck.capture.sites import Point, Site
from geomcheck.gate.uncertainty import jackknife_se, paired_se, with_uncertainty
from geomcheck.properties.base import Wanted


def test_jackknife_of_group_means_matches_the_true_standard_error():
    """Mean of 64 sequences' values in 8 groups: the true SE is sigma / 8; the estimate averages within 20 %."""
    rng = np.random.default_rng(0)
    sigma, n, estimates, means = 2.0, 64, [], []
    groups = sequence_groups(n, 8)
    for _ in range(2000):
        x = rng.normal(scale=sigma, size=n)
        means.append(x.mean())
        estimates.append(jackknife_se([x[groups != g].mean() for g in range(8)]))
    true = sigma / np.sqrt(n)
    assert abs(np.mean(estimates) / true - 1) < 0.2
    assert abs(np.std(means) / true - 1) < 0.1


def test_jackknife_needs_two_finite_replicates():
    assert np.isnan(jackknife_se([1.0]))
    assert np.isnan(jackknife_se([1.0, float("nan")]))


def test_paired_errors_cancel_shared_noise():
    rng = np.random.default_rng(1)
    shared = rng.normal(size=8)
    a, b = shared, shared + 0.01 * rng.normal(size=8)
    assert paired_se(a, b) < 0.05 * np.hypot(jackknife_se(a), jackknife_se(b))


def planted(n_seq: int = 16, length: int = 20, d: int = 12, blocks: int = 3, seed: int = 0) -> tuple[Activations, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = sequence_groups(n_seq, 8)
    index = np.stack(np.meshgrid(np.arange(n_seq), np.arange(length), indexing="ij"), -1).reshape(-1, 2)[::3]
    arrays, sites = {}, {}
    for b in range(blocks):
        for point in (Point.RESID_POST, Point.ATTN_OUT, Point.MLP_OUT):
            x = rng.normal(size=(n_seq, length, d)) * (1 + b)
            x[:, 0] *= 10
            arrays[Site(b, point)] = x
            sites[Site(b, point)] = grouped_stats(x, groups, sample_index=index)
    acts = Activations("planted", blocks, d, "rotary", np.zeros((n_seq, length), dtype=np.int64), True, sites,
                       sample_index=index, groups=groups)
    return acts, arrays


def test_leaving_a_group_out_equals_capturing_without_it():
    acts, arrays = planted()
    dropped = acts.without_group(3)
    keep = acts.groups != 3
    for site, x in arrays.items():
        direct = grouped_stats(x[keep], acts.groups[keep])
        stats = dropped.sites[site]
        np.testing.assert_allclose(stats.norms, direct.norms, rtol=1e-6)
        np.testing.assert_allclose(stats.max_abs, direct.max_abs, rtol=1e-6)
        np.testing.assert_allclose(stats.position_sum, direct.position_sum, rtol=1e-4, atol=1e-4)
    assert dropped.n_sequences == keep.sum() and dropped.sample_index[:, 0].max() < dropped.n_sequences


def test_every_property_gets_errors_on_the_metrics_asked_for():
    acts, _ = planted()
    for name in ("first_position_norm", "layer_norm_growth", "sequence_structure", "attn_mlp_separation"):
        prop = properties.get(name)
        params = prop.params()
        layers = (0, 1, 2)
        measured = prop.measure(acts, params, layers)
        if not measured.valid:
            continue
        wanted = Wanted(frozenset({prop.default_metric}), per_layer=False)
        with_se = with_uncertainty(prop, acts, params, layers, measured, wanted)
        metric = with_se.metrics[prop.default_metric]
        assert metric.aggregate == measured.metrics[prop.default_metric].aggregate, name
        assert metric.se is not None and metric.se >= 0 and len(metric.replicates) == 8, name
        assert not metric.per_layer_se, "per-layer errors only when asked"


def test_a_replicate_asked_for_one_metric_returns_the_same_value():
    acts, _ = planted()
    for name in properties.REGISTRY:
        prop = properties.get(name)
        full = prop.measure(acts, prop.params(), (0, 1, 2))
        if not full.valid:
            continue
        only = prop.measure(acts, prop.params(), (0, 1, 2), Wanted(frozenset({prop.default_metric}), per_layer=False))
        assert only.metrics[prop.default_metric].aggregate == full.metrics[prop.default_metric].aggregate, name
