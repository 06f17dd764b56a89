"""Every registered property keeps the contract: pure, deterministic, declared, NaN-safe, discriminating."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from property_fixtures import PLANTED, build_activations
from pydantic import ValidationError

from geomcheck.properties import REGISTRY, Measurement, PropertyDef

NAMES = sorted(REGISTRY)


def layers_of(acts) -> tuple[int, ...]:
    return tuple(range(acts.n_blocks))


def run(prop: PropertyDef, acts) -> Measurement:
    return prop.measure(acts, prop.params(), layers_of(acts))


def test_every_property_declares_a_planted_case():
    assert set(PLANTED) == set(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_declared_metrics_are_what_the_measurement_describes(name):
    prop = REGISTRY[name]
    result = run(prop, PLANTED[name].build(0, True))
    for spec in prop.metric_specs:
        metric = result.metric(spec.name)
        assert bool(metric.per_layer) == spec.per_layer, spec.name
        assert "{" not in metric.description, spec.name  # every template field was filled
    assert prop.metric_spec(PLANTED[name].metric).direction is not None  # the planted case says which way it moves


@pytest.mark.parametrize("name", NAMES)
def test_names_agree(name):
    prop = REGISTRY[name]
    assert prop.name == name == prop.measure.__name__
    assert prop.measure.__module__.rsplit(".", 1)[-1] == name
    assert prop.default_metric in prop.metrics


@pytest.mark.parametrize("name", NAMES)
def test_returns_declared_metrics(name):
    prop = REGISTRY[name]
    acts = PLANTED[name].build(0, True)
    assert prop.applies(acts) is None
    result = run(prop, acts)
    assert isinstance(result, Measurement)
    assert result.valid, result.reason
    assert result.property == name
    assert tuple(result.metrics) == prop.metrics
    assert result.params == prop.params().model_dump()
    # Details are what the report draws (summaries, a probe's scores), never the activations themselves.
    assert all(isinstance(array, np.ndarray) for array in result.details.values())
    assert sum(array.nbytes for array in result.details.values()) <= 1 << 20


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_bit_for_bit(name):
    prop = REGISTRY[name]
    first, second = run(prop, PLANTED[name].build(3, True)), run(prop, PLANTED[name].build(3, True))
    for metric in prop.metrics:
        a, b = first.metric(metric), second.metric(metric)
        np.testing.assert_array_equal(a.aggregate, b.aggregate)
        assert dict(a.per_layer) == pytest.approx(dict(b.per_layer), abs=0, rel=0, nan_ok=True)
    for key in first.details:
        np.testing.assert_array_equal(first.details[key], second.details[key])


@pytest.mark.parametrize("name", NAMES)
def test_rejects_nonfinite_with_a_reason(name):
    prop = REGISTRY[name]
    acts = PLANTED[name].build(0, True)
    for stats in acts.sites.values():
        stats.nonfinite = 7
    result = run(prop, acts)
    assert not result.valid
    assert "non-finite" in result.reason and "7 token vectors" in result.reason
    assert "blocks." in result.reason


@pytest.mark.parametrize("name", NAMES)
def test_discriminates_planted_structure_from_noise(name):
    prop, case = REGISTRY[name], PLANTED[name]
    planted = run(prop, case.build(1, True)).metric(case.metric).aggregate
    noise = run(prop, case.build(1, False)).metric(case.metric).aggregate
    assert (planted > noise) if case.higher_when_planted else (planted < noise), (planted, noise)


@pytest.mark.parametrize("name", NAMES)
def test_zero_activations_are_invalid_not_errors(name):
    prop = REGISTRY[name]
    shape = (4, 6, 32, 8)
    tokens = np.repeat(np.arange(6)[:, None] + 10, 32, axis=1)
    table = np.zeros((32, 8)) if prop.needs.position_table else None
    acts = build_activations(np.zeros(shape), tokens=tokens, position_table=table)
    result = run(prop, acts)
    assert not result.valid and result.reason


@pytest.mark.parametrize("name", NAMES)
def test_single_sequence_and_constant_inputs_do_not_raise(name):
    prop = REGISTRY[name]
    rng = np.random.default_rng(0)
    one = build_activations(rng.standard_normal((4, 1, 32, 8)), tokens=np.full((1, 32), 9), samples=32)
    constant = build_activations(np.ones((4, 6, 32, 8)), tokens=np.full((6, 32), 9))
    for acts in (one, constant):
        if prop.needs.position_table:
            acts = dataclasses.replace(acts, position_scheme="learned", position_table=np.ones((32, 8)))
        result = run(prop, acts)
        assert result.valid or result.reason


@pytest.mark.parametrize("name", NAMES)
def test_no_layers_is_invalid(name):
    prop = REGISTRY[name]
    result = prop.measure(PLANTED[name].build(0, True), prop.params(), ())
    if result.valid:  # a property that reads the position table (which belongs to no block) may measure it
        assert all(not m.per_layer for m in result.metrics.values())
    else:
        assert result.reason


@pytest.mark.parametrize("name", NAMES)
def test_params_are_declared_and_validated(name):
    params = REGISTRY[name].params
    with pytest.raises(ValidationError):
        params(no_such_parameter=1)
    numeric = [f for f, info in params.model_fields.items() if info.metadata and info.annotation in (int, float)]
    assert numeric or not params.model_fields, "every numeric parameter declares a range"
    for field in numeric:
        with pytest.raises(ValidationError):
            params(**{field: -(10**9)})
