"""Fitted bounds (geomcheck.spec.bounds): where a threshold goes between trained models and random twins."""

import math
from types import MappingProxyType

import pytest

from geomcheck.properties.base import Measurement, Metric
from geomcheck.spec.bounds import Judged, fit_bound, judged, margin_in_se, side
from geomcheck.spec.schema import parse_spec

SPEC = """\
name: bounds
checks:
  - id: aggregate_min
    property: layer_norm_growth
    expect: {metric: late_growth, min: 2.5}
  - id: per_block_min
    property: first_position_norm
    expect: {on: per_layer, min: 20, mostly: 0.75}
  - id: per_block_max
    property: first_position_norm
    expect: {on: per_layer, max: 3}
  - id: range
    property: first_position_norm
    expect: {between: [1, 3]}
"""


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    path = tmp_path_factory.mktemp("bounds") / "bounds.yaml"
    return {check.id: check for check in parse_spec(SPEC, path).checks}


def ratios(values: dict[int, float], ses: dict[int, float] | None = None) -> Measurement:
    metric = Metric("ratio", "", aggregate=None, per_layer=MappingProxyType(values), per_layer_se=MappingProxyType(ses or {}))
    return Measurement("first_position_norm", True, None, tuple(values), {}, MappingProxyType({"ratio": metric}))


def test_a_check_points_one_way_or_is_a_range(checks):
    assert side(checks["aggregate_min"]) == "min"
    assert side(checks["per_block_max"]) == "max"
    assert side(checks["range"]) is None


def test_a_per_block_check_is_decided_by_the_block_that_makes_mostly(checks):
    # mostly 0.75 of 4 blocks: 3 must pass, so the third-best block decides.
    measured = ratios({0: 50.0, 1: 5.0, 2: 40.0, 3: 30.0}, {3: 1.5})
    decided = judged(checks["per_block_min"], measured, "min")
    assert (decided.value, decided.se, decided.where) == (30.0, 1.5, "block 3")
    # Every block must pass a max: the largest decides, and NaN counts as the worst.
    assert judged(checks["per_block_max"], ratios({0: 1.0, 1: 2.0}), "max").value == 2.0
    assert math.isnan(judged(checks["per_block_max"], ratios({0: 1.0, 1: float("nan")}), "max").value)


def test_the_bound_sits_between_with_room_on_both_sides():
    fit = fit_bound("min", [Judged(40.0, 2.0, "aggregate"), Judged(60.0, 1.0, "aggregate")], [Judged(1.5, 0.1, "aggregate")], z=3.0)
    # trained edge 40 - 6 = 34, twin edge 1.5 + 0.3 = 1.8: the geometric mean, about 7.8
    assert fit.trained_edge == pytest.approx(34.0) and fit.twin_edge == pytest.approx(1.8)
    assert 1.8 < fit.bound < 34.0 and fit.bound == pytest.approx(math.sqrt(34.0 * 1.8), rel=0.02)
    assert fit.admits(40.0) and not fit.admits(1.5) and not fit.admits(float("nan"))
    assert margin_in_se(fit, Judged(40.0, 2.0, "aggregate")) == pytest.approx((40.0 - fit.bound) / 2.0)
    # A max bound mirrors it; values that straddle zero take the midpoint.
    mirrored = fit_bound("max", [Judged(-1.0, 0.1, "aggregate")], [Judged(1.0, 0.1, "aggregate")], z=2.0)
    assert mirrored.bound == pytest.approx(0.0, abs=1e-9) and mirrored.admits(-1.0) and not mirrored.admits(1.0)


def test_no_bound_when_trained_and_twin_overlap_within_the_margin():
    fit = fit_bound("min", [Judged(1.0, 0.2, "aggregate")], [Judged(0.5, 0.1, "aggregate")], z=3.0)
    assert fit.bound is None and "not 3 SEs apart" in fit.why
    assert fit_bound("min", [Judged(0.4, 0.0, "aggregate")], [Judged(0.5, 0.0, "aggregate")]).bound is None  # wrong side


def test_a_twin_with_nothing_to_measure_leaves_the_bound_at_the_trained_edge():
    fit = fit_bound("max", [Judged(0.38, 0.01, "aggregate")], [Judged(float("nan"), float("nan"), "aggregate")], z=3.0)
    assert fit.bound >= 0.41 and fit.admits(0.38) and not fit.admits(float("nan"))


def test_with_no_finite_twin_the_template_bound_stands_while_the_trained_values_sit_inside_it():
    nan = Judged(float("nan"), float("nan"), "aggregate")
    assert fit_bound("max", [Judged(0.38, 0.01, "aggregate")], [nan], prior=0.5).bound == 0.5
    assert fit_bound("max", [Judged(0.6, 0.01, "aggregate")], [nan], prior=0.5).bound >= 0.63  # outside it: moved out
