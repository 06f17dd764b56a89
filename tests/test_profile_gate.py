"""The paired profile test (geomcheck.gate.profile): a block that moved past its floor alarms, a hair does not."""

from __future__ import annotations

import math

from geomcheck import properties
from geomcheck.gate.profile import largest_first, profile_rows, profile_test
from geomcheck.properties.base import measurement


def test_a_block_past_its_floor_alarms_and_a_hair_does_not():
    rows = profile_rows("median_norm", {0: 10.0, 1: 20.0, 2: 40.0}, {0: 10.05, 1: 21.0, 2: 40.1}, (0.0, 0.01))
    assert [row.alarm for row in rows] == [False, True, False]
    assert math.isclose(rows[1].floor, 0.2)
    assert rows[1].describe() == "median_norm block 1: 21 vs baseline 20 (change +1, +5.0 %; paired profile, floor 0.2)"


def test_a_block_that_became_undefined_alarms():
    (row,) = profile_rows("ratio", {3: 5.0}, {3: math.nan}, (0.0, 0.02))
    assert row.alarm and "undefined now" in row.note


def test_the_absolute_part_of_the_floor_covers_values_near_zero():
    rows = profile_rows("position_silhouette", {0: 0.0, 1: 0.001}, {0: 0.004, 1: -0.003}, (0.005, 0.02))
    assert not any(row.alarm for row in rows)


def test_largest_first_orders_by_distance_past_the_floor():
    rows = profile_rows("median_norm", {0: 10.0, 1: 100.0}, {0: 12.0, 1: 103.0}, (0.0, 0.01))
    assert [row.where for row in largest_first(rows)] == ["median_norm block 0", "median_norm block 1"]


def test_only_declared_profile_metrics_take_part():
    prop = properties.get("layer_norm_growth")
    declared = {spec.name for spec in prop.metric_specs if spec.paired_floor is not None and spec.per_layer}
    assert declared == {"median_norm"}
    spec = prop.metric_spec("median_norm")
    m = measurement("layer_norm_growth", (0, 1), prop.params(), [spec.value(None, {0: 1.0, 1: 2.0}),
                                                                   prop.metric_spec("growth_ratio").value(2.0, {})])
    result = profile_test(prop, {"median_norm": {0: 1.0, 1: 3.0}}, m)
    assert result is not None and result.tested == 2 and [row.where for row in result.alarms] == ["median_norm block 1"]
