"""The paired profile test: on the baseline's own token ids, did any block's value move by more than numerics can?

Why a second test beside the drift test: damage that hurts a model is often local. Swapping two of
30 blocks, re-initialising one, or mis-mapping one block's projections moves two or three blocks'
values by 5-100 % and a check's aggregate (a median, an onset) hardly at all. Under fresh inputs the
per-block values are too noisy to see that; on the baseline's own token ids they are not noisy at
all, since the same model on the same tokens gives the same numbers. What a paired difference can
still contain without damage is numerics: a bfloat16 or float16 round trip of the weights, a re-save,
a Q8_0 round trip, another BLAS. So the test is a floor, not a p-value:

    alarm at block b  <=>  |now_b - baseline_b| > abs + rel * |baseline_b|

with (abs, rel) declared per metric (``MetricSpec.profile``) from the measured spread of those
harmless changes, with a wide margin: on SmolLM2-135M the largest harmless change of any block was
under a tenth of every floor, and every damage of the zoo that raised next-token loss by 1 % or more
moved some block past it (docs/gating.md, ``benchmarks/damage_zoo.py``).

Only per-block metrics a property declares stable enough take part (norms, norm ratios, the Fisher
ratio, a silhouette); counts and argmax-like values that flip in steps do not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from geomcheck.gate.drift import DriftResult, DriftRow, DriftSettings
from geomcheck.properties.base import Measurement, PropertyDef

PROFILE_NOTE = "paired profile"


def profile_rows(metric: str, then: Mapping[int, float | None], now: Mapping[int, float], floor: tuple[float, float]) -> list[DriftRow]:
    """One row per block recorded in ``then``: its change, the floor, and whether it moved past it."""
    low_abs, low_rel = floor
    rows = []
    for block in sorted(then):
        old, new = _finite(then[block]), _finite(now.get(block))
        where = f"{metric} block {block}"
        if old is None and new is None:
            continue
        limit = low_abs + low_rel * abs(old or 0.0)
        if old is None or new is None:
            note = "defined now, undefined in the baseline" if old is None else "undefined now, defined in the baseline"
            rows.append(DriftRow(where, old, new, None, 0.0, limit, True, f"{PROFILE_NOTE}: {note}"))
            continue
        rows.append(DriftRow(where, old, new, None, 0.0 if abs(new - old) > limit else 1.0, limit, abs(new - old) > limit, PROFILE_NOTE))
    return rows


def profile_test(prop: PropertyDef, recorded: Mapping[str, Mapping[int, float | None]], measurement: Measurement) -> DriftResult | None:
    """Every declared profile metric of ``prop``: ``recorded`` per-block values against the measurement's.

    ``recorded`` maps metric name to {block: value}; a metric the measurement has no per-block values
    for is passed over (an invalid measurement already fails its check). None when nothing was tested.
    """
    rows: list[DriftRow] = []
    for spec in prop.metric_specs:
        if spec.paired_floor is None or not spec.per_layer or spec.name not in recorded:
            continue
        metric = measurement.metrics.get(spec.name)
        if metric is None or not metric.per_layer:
            continue
        rows += profile_rows(spec.name, recorded[spec.name], {int(k): float(v) for k, v in metric.per_layer.items()}, spec.paired_floor)
    return DriftResult(tuple(rows), DriftSettings(alpha=1.0)) if rows else None


def profile_of(prop: PropertyDef, measurement: Measurement) -> dict[str, dict[int, float]]:
    """The per-block values of ``prop``'s profile metrics in ``measurement`` (the A side of a comparison)."""
    return {spec.name: {int(k): float(v) for k, v in measurement.metrics[spec.name].per_layer.items()}
            for spec in prop.metric_specs if spec.paired_floor is not None and spec.per_layer and spec.name in measurement.metrics}


def largest_first(rows: tuple[DriftRow, ...] | list[DriftRow]) -> list[DriftRow]:
    """Rows by how far past their floor they moved, furthest first: where a user starts looking for the bug."""
    def excess(row: DriftRow) -> float:
        if row.delta is None:
            return math.inf
        return abs(row.delta) / row.floor if row.floor > 0 else math.inf
    return sorted(rows, key=excess, reverse=True)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None
