"""Expectations: inclusive bounds, per-layer fractions, and no silent pass for invalid or NaN measurements."""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import pytest

from geomcheck.properties.base import Measurement, Metric, MetricSpec, PropertyDef, PropertyParams
from geomcheck.spec.expect import Outcome, errored, evaluate, format_value
from geomcheck.spec.schema import Check, parse_spec


class Params(PropertyParams):
    pass


def _unused(*args: object) -> None:
    raise AssertionError("not called")


def _per_layer(name: str) -> MetricSpec:
    """A metric with per-layer values, as the parser sees it (its numbers are never computed here)."""
    return MetricSpec(name, name, "value", per_layer=True)


REGISTRY = {
    "first_position_norm": PropertyDef("first_position_norm", Params, _unused, _unused, "position 0 norm", (_per_layer("ratio"), _per_layer("norm")), "ratio")
}
MODEL = "smollm2-135m"


def check(expect: str, layers: str = "all") -> Check:
    text = f"checks:\n  - property: first_position_norm\n    layers: {layers}\n    reason: sink\n    expect: {expect}\n"
    return parse_spec(text, "specs/llama.yaml", registry=REGISTRY).checks[0]


def aggregate(value: float | None, layers: tuple[int, ...] = tuple(range(12, 28)), metric: str = "ratio") -> Measurement:
    return Measurement(
        "first_position_norm", True, None, layers, {},
        MappingProxyType({metric: Metric(metric, "", aggregate=value)}),
    )


def per_layer(values: dict[int, float], metric: str = "ratio") -> Measurement:
    return Measurement(
        "first_position_norm", True, None, tuple(values), {},
        MappingProxyType({metric: Metric(metric, "", per_layer=MappingProxyType(values))}),
    )


# ---------------------------------------------------------------- aggregate bounds


@pytest.mark.parametrize(
    ("expect", "value", "status"),
    [
        ("{min: 20}", 20.0, "passed"),
        ("{min: 20}", math.nextafter(20.0, 0), "failed"),
        ("{min: 20}", 1e9, "passed"),
        ("{max: 0.5}", 0.5, "passed"),
        ("{max: 0.5}", math.nextafter(0.5, 1), "failed"),
        ("{min: -1, max: 1}", -1.0, "passed"),
        ("{min: -1, max: 1}", 1.0, "passed"),
        ("{min: -1, max: 1}", -1.0001, "failed"),
        ("{between: [0.1, 0.9]}", 0.1, "passed"),
        ("{between: [0.1, 0.9]}", 0.9, "passed"),
        ("{between: [0.1, 0.9]}", 0.0999, "failed"),
        ("{between: [0.1, 0.9]}", 0.9001, "failed"),
        ("{min: 0, max: 0}", 0.0, "passed"),
        ("{min: 20}", float("nan"), "failed"),
        ("{max: 20}", float("nan"), "failed"),
        ("{min: 20}", float("inf"), "failed"),
        ("{max: 20}", float("-inf"), "failed"),
    ],
)
def test_aggregate_bounds_are_inclusive(expect: str, value: float, status: str) -> None:
    outcome = evaluate(check(expect), aggregate(value), model=MODEL)
    assert outcome.status == status, outcome.headline
    assert outcome.value == value or (math.isnan(value) and math.isnan(outcome.value))
    assert outcome.failing_layers == ()


def test_aggregate_headline() -> None:
    outcome = evaluate(check("{min: 20}"), aggregate(1.1), model=MODEL)
    assert outcome.headline == "first_position_norm[smollm2-135m] = 1.1 over blocks 12–27, expected ≥ 20 (specs/llama.yaml:2)"
    assert outcome.details == ("check 'first_position_norm': ratio (aggregate)", "reason: sink")


def test_value_just_outside_a_bound_is_shown_with_enough_digits() -> None:
    outcome = evaluate(check("{min: 20}"), aggregate(19.99999), model=MODEL)
    assert outcome.status == "failed"
    assert "= 19.99999 over" in outcome.headline
    assert format_value(20.0, check("{min: 20}").expect) == "20"
    assert format_value(0.123456) == "0.123"


def test_nan_is_named_in_the_details() -> None:
    outcome = evaluate(check("{min: 20}"), aggregate(float("nan")), model=MODEL)
    assert "= nan over" in outcome.headline
    assert "not finite" in outcome.details[0]


def test_non_default_metric_is_named_in_the_subject() -> None:
    outcome = evaluate(check("{metric: norm, max: 5}"), aggregate(4.0, metric="norm"), model=MODEL)
    assert outcome.status == "passed"
    assert outcome.headline.startswith("first_position_norm.norm[smollm2-135m] = 4 over")


# ---------------------------------------------------------------- per-layer and mostly


def test_per_layer_headline_names_failing_blocks_and_scope() -> None:
    values = {layer: 25.0 for layer in range(12, 28)} | {14: 1.1, 15: 1.1}
    outcome = evaluate(check("{on: per_layer, min: 20}", "[12, 27]"), per_layer(values), model=MODEL)
    assert outcome.status == "failed"
    assert outcome.headline == (
        "first_position_norm[smollm2-135m] = 1.1 at blocks 14–15, expected ≥ 20 in blocks 12–27 (specs/llama.yaml:2)"
    )
    assert outcome.failing_layers == (14, 15)
    assert dict(outcome.per_layer) == values
    assert outcome.details[:3] == ("14 of 16 blocks within bounds; 16 needed", "block 14: 1.1", "block 15: 1.1")


def test_per_layer_failing_values_shown_as_a_span() -> None:
    outcome = evaluate(check("{on: per_layer, max: 1}"), per_layer({0: 0.5, 1: 2.0, 2: 3.5}), model=MODEL)
    assert "= 2 to 3.5 at blocks 1–2" in outcome.headline


def test_per_layer_all_pass() -> None:
    outcome = evaluate(check("{on: per_layer, between: [0, 1]}"), per_layer({0: 0.0, 1: 0.5, 2: 1.0}), model=MODEL)
    assert outcome.status == "passed"
    assert outcome.failing_layers == ()
    assert outcome.headline.startswith("first_position_norm[smollm2-135m] = 0 to 1 at blocks 0–2, expected in [0, 1]")


@pytest.mark.parametrize(
    ("mostly", "n_failing", "status"),
    [
        (0.9, 1, "passed"),  # 9 of 10 pass; 9 needed
        (0.9, 2, "failed"),  # 8 of 10
        (0.85, 1, "passed"),  # ceil(8.5) = 9 needed
        (0.85, 2, "failed"),
        (0.8, 2, "passed"),  # exactly 8 of 10, no float slack lost
        (0.7, 3, "passed"),  # 0.7 * 10 = 7.000000000000001 in floating point
        (1.0, 1, "failed"),
        (0.1, 9, "passed"),  # 1 of 10
        (0.01, 9, "passed"),  # at least one block must pass
        (0.01, 10, "failed"),
    ],
)
def test_mostly_counts_the_fraction_of_passing_layers(mostly: float, n_failing: int, status: str) -> None:
    values = {layer: (0.0 if layer < n_failing else 5.0) for layer in range(10)}
    outcome = evaluate(check(f"{{on: per_layer, min: 1, mostly: {mostly}}}"), per_layer(values), model=MODEL)
    assert outcome.status == status, outcome.details
    assert outcome.failing_layers == tuple(range(n_failing))
    if status == "failed":
        assert f"at least {mostly:.0%} of blocks 0–9" in outcome.headline


def test_nan_layer_fails_that_layer() -> None:
    values = {0: 5.0, 1: float("nan"), 2: 5.0, 3: float("inf")}
    outcome = evaluate(check("{on: per_layer, min: 1}"), per_layer(values), model=MODEL)
    assert outcome.status == "failed"
    assert outcome.failing_layers == (1, 3)
    assert "= inf, nan at blocks 1, 3" in outcome.headline


def test_nan_layer_tolerated_under_mostly() -> None:
    values = {layer: 5.0 for layer in range(10)} | {4: float("nan")}
    outcome = evaluate(check("{on: per_layer, min: 1, mostly: 0.9}"), per_layer(values), model=MODEL)
    assert outcome.status == "passed" and outcome.failing_layers == (4,)


def test_many_failing_layers_are_summarised() -> None:
    outcome = evaluate(check("{on: per_layer, min: 1}"), per_layer({layer: 0.0 for layer in range(20)}), model=MODEL)
    assert outcome.details[-3] == "... and 12 more failing blocks"


# ---------------------------------------------------------------- never a silent pass


def test_invalid_measurement_fails_with_its_reason() -> None:
    measurement = Measurement("first_position_norm", False, "non-finite activations at blocks.3.resid_post", (3, 4), {})
    outcome = evaluate(check("{min: 0}"), measurement, model=MODEL)
    assert outcome.status == "failed"
    assert outcome.headline == (
        "first_position_norm[smollm2-135m] could not be measured: non-finite activations at blocks.3.resid_post "
        "(specs/llama.yaml:2)"
    )
    assert outcome.details[0] == "expected ≥ 0 in blocks 3–4"


@pytest.mark.parametrize(
    ("expect", "measurement", "fragment"),
    [
        ("{min: 0}", aggregate(None), "has no aggregate value; compare it with `on: per_layer`"),
        ("{on: per_layer, min: 0}", per_layer({}), "has no per-layer values"),
        ("{min: 0}", aggregate(1.0, metric="norm"), "reported no metric 'ratio' (reported: norm)"),
        ("{min: 0}", dataclasses.replace(aggregate(1.0), property="other"), "got a measurement of 'other'"),
    ],
)
def test_faults_are_errors_not_passes(expect: str, measurement: Measurement, fragment: str) -> None:
    outcome = evaluate(check(expect), measurement, model=MODEL)
    assert outcome.status == "error"
    assert fragment in outcome.headline
    assert outcome.headline.endswith("(specs/llama.yaml:2)")


def test_skip_and_errored_share_the_headline_shape() -> None:
    c = check("{min: 0}")
    assert Outcome.skip("GPT-2 has no BOS", check=c, model=MODEL).headline == (
        "first_position_norm[smollm2-135m] skipped: GPT-2 has no BOS (specs/llama.yaml:2)"
    )
    assert Outcome.skip("spec is for llama models") == Outcome("skipped", "spec is for llama models")
    outcome = errored(c, model=MODEL, reason="block index 40 is out of range for a model with 30 blocks")
    assert outcome.status == "error"
    assert outcome.headline == (
        "first_position_norm[smollm2-135m]: block index 40 is out of range for a model with 30 blocks (specs/llama.yaml:2)"
    )


def test_spec_path_overrides_the_file_shown() -> None:
    outcome = evaluate(check("{min: 20}"), aggregate(1.1), model=MODEL, spec_path="other/llama.yaml")
    assert outcome.headline.endswith("(other/llama.yaml:2)")


def test_properties_for_junit() -> None:
    values = {0: 0.0, 1: 5.0}
    outcome = evaluate(check("{on: per_layer, min: 1}"), per_layer(values), model=MODEL)
    props = dict(outcome.properties())
    assert props["geomcheck_status"] == "failed"
    assert props["geomcheck_failing_layers"] == "0"
    assert dict(evaluate(check("{min: 0}"), aggregate(2.5), model=MODEL).properties())["geomcheck_value"] == 2.5


def test_outcome_is_frozen() -> None:
    outcome = evaluate(check("{min: 0}"), aggregate(1.0), model=MODEL)
    assert isinstance(outcome, Outcome) and outcome.passed
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.status = "failed"  # type: ignore[misc]
