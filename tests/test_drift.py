"""The drift test: planted shifts in standard errors, the floor, integer metrics and Holm's correction."""

from __future__ import annotations

import numpy as np
import pytest

from geomcheck.gate.drift import DriftSettings, GatedValue, drift_test, holm, p_value

NO_FLOOR = DriftSettings(alpha=0.01)


def one(baseline: float, now: float, se: float, settings: DriftSettings = NO_FLOOR):
    se_each = se / np.sqrt(2)  # two equal errors combine to ``se``
    return drift_test([GatedValue("m aggregate", baseline, se_each)], [GatedValue("m aggregate", now, se_each)], settings)


def test_a_shift_of_five_standard_errors_is_flagged_and_half_of_one_is_not():
    assert one(1.0, 1.0 + 5 * 0.02, 0.02).alarms
    assert not one(1.0, 1.0 + 0.5 * 0.02, 0.02).alarms


def test_the_floor_keeps_significant_but_tiny_changes_quiet():
    settings = DriftSettings(alpha=0.01, min_abs=0.01)
    assert not one(1.0, 1.005, 1e-6, settings).alarms
    assert one(1.0, 1.02, 1e-6, settings).alarms


def test_integer_metrics_compare_whole_blocks():
    settings = DriftSettings(alpha=0.01, min_abs=1.0, integer=True)
    assert not one(11.0, 12.0, 0.0, settings).alarms, "one block is within the floor"
    assert one(11.0, 13.0, 0.0, settings).alarms
    assert p_value(1.0, 1.0, integer=True, degrees=7) > p_value(1.0, 1.0, integer=False, degrees=7)


def test_a_value_that_became_undefined_always_alarms():
    result = drift_test([GatedValue("m aggregate", 1.0, 0.1)], [GatedValue("m aggregate", None, None)], NO_FLOOR)
    assert result.alarms and "undefined now" in result.alarms[0].describe()


def test_holm_matches_the_step_down_definition():
    # m = 4, alpha = 0.05: thresholds 0.0125, 0.0167, 0.025, 0.05 in p order
    assert holm([0.01, 0.04, 0.012, 0.03], 0.05) == [True, False, True, False]
    assert holm([0.001, 0.0169, 0.02, 0.2], 0.05) == [True, False, False, False]
    assert holm([], 0.05) == []


def test_a_checks_false_alarm_rate_is_alpha_over_many_gated_values():
    """Null simulation: 30 gated values per check, jackknife-like errors from 8 groups, 400 checks."""
    rng = np.random.default_rng(0)
    alarms = 0
    for _ in range(400):
        true = rng.normal(size=30)
        values = []
        for _side in range(2):
            groups = true + rng.normal(scale=1.0, size=(8, 30))  # 8 group means per value
            mean = groups.mean(axis=0)
            se = groups.std(axis=0, ddof=1) / np.sqrt(8)
            values.append([GatedValue(f"block {i}", float(mean[i]), float(se[i])) for i in range(30)])
        alarms += bool(drift_test(values[0], values[1], NO_FLOOR).alarms)
    assert alarms / 400 <= 0.03, alarms


@pytest.mark.parametrize("shift", [3.0, 6.0])
def test_power_grows_with_the_shift(shift):
    rng = np.random.default_rng(1)
    caught = sum(bool(one(0.0, shift * 0.1 + rng.normal(scale=0.1), 0.1).alarms) for _ in range(200))
    assert caught / 200 > (0.2 if shift == 3.0 else 0.9)
