"""Standard errors over input sampling for every measured value, from the capture already made.

The estimator is the delete-a-group jackknife: capture splits the sequences into G contiguous
groups (``CapturePlan.groups``, default 8) and keeps the statistics that cannot be taken apart
afterwards (per-position sums and maxima) per group. A property is then measured G more times,
each time with one group left out, and

    se = sqrt((G - 1) / G * sum_g (theta_g - mean(theta))^2).

Contiguous groups keep neighbouring corpus chunks together, so correlation between them widens
the error rather than hiding. The replicates are kept beside each value: two checkpoints that saw
the same inputs are compared through their paired replicates (``paired_se``), which cancels the
part of the noise the inputs share.

Cost: G extra measurements of each property, but only of the metrics a check needs (``Wanted``);
per-block values are repeated only when some check gates them. The G replicates run on as many
threads as there are cores (each with one BLAS thread, see geomcheck.properties.threads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from types import MappingProxyType

import numpy as np

from geomcheck.capture.activations import Activations
from geomcheck.properties.base import (
    Measurement,
    Metric,
    PropertyDef,
    PropertyParams,
    Wanted,
)
from geomcheck.properties.threads import map_on_cores


def jackknife_se(replicates: Sequence[float]) -> float:
    """Delete-a-group jackknife standard error; NaN when fewer than two finite replicates."""
    values = np.asarray(replicates, dtype=np.float64)
    if len(values) < 2 or not np.all(np.isfinite(values)):
        return math.nan
    n = len(values)
    return float(math.sqrt((n - 1) / n * float(((values - values.mean()) ** 2).sum())))


def paired_se(a: Sequence[float], b: Sequence[float]) -> float:
    """Standard error of B - A when both were measured on the same inputs with the same groups."""
    if len(a) != len(b):
        return math.nan
    return jackknife_se(np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64))


def with_uncertainty(
    prop: PropertyDef,
    acts: Activations,
    params: PropertyParams,
    layers: tuple[int, ...],
    measured: Measurement,
    wanted: Wanted | None = None,
) -> Measurement:
    """``measured`` with a standard error and replicates on each value of the wanted metrics.

    Values get no standard error (None) when the measurement is invalid, the capture kept fewer
    than two sequence groups, or a leave-one-out replicate could not be measured.
    """
    if not measured.valid or acts.n_groups < 2:
        return measured

    def leave_out(group: int) -> Measurement | None:
        try:
            subset = acts.without_group(group)
        except ValueError:
            return None
        return prop.measure(subset, params, layers, wanted)

    replicates = map_on_cores(leave_out, [int(g) for g in np.unique(acts.groups)])
    if any(replicate is None or not replicate.valid for replicate in replicates):
        return measured
    metrics = {}
    for name, metric in measured.metrics.items():
        replicas = [r.metrics[name] for r in replicates]
        if wanted is None or name in wanted.metrics:
            metrics[name] = _attach(metric, replicas, per_layer=wanted is None or wanted.per_layer)
        elif not wanted.per_layer and _computed(metric, replicas):
            # Not asked for, but every replicate measured it anyway (a Fisher ratio comes with the
            # probe's PCA): its error costs nothing now and spares a later check the replicates.
            metrics[name] = _attach(metric, replicas, per_layer=False)
        else:
            metrics[name] = metric
    return replace(measured, metrics=MappingProxyType(metrics))


def covered(measurement: Measurement, wanted: Wanted) -> Wanted:
    """The metrics ``measurement`` now carries errors for: those wanted and those that came free."""
    free = {name for name, metric in measurement.metrics.items() if metric.replicates is not None}
    return Wanted(frozenset(wanted.metrics | free), wanted.per_layer)


def _computed(metric: Metric, replicas: list[Metric]) -> bool:
    """Whether the metric has a finite value in the measurement and in every replicate (not a skipped NaN)."""
    values = [metric.aggregate, *(r.aggregate for r in replicas)]
    return all(v is not None and math.isfinite(float(v)) for v in values)


def _attach(metric: Metric, replicas: list[Metric], *, per_layer: bool) -> Metric:
    aggregate_reps = None
    se = None
    if metric.aggregate is not None and all(r.aggregate is not None for r in replicas):
        aggregate_reps = tuple(float(r.aggregate) for r in replicas)
        se = jackknife_se(aggregate_reps)
    layer_reps: dict[int, tuple[float, ...]] = {}
    layer_se: dict[int, float] = {}
    if per_layer:
        for layer in metric.per_layer:
            values = [r.per_layer.get(layer) for r in replicas]
            if all(v is not None for v in values):
                layer_reps[layer] = tuple(float(v) for v in values)
                layer_se[layer] = jackknife_se(layer_reps[layer])
    return replace(
        metric,
        se=se,
        replicates=aggregate_reps,
        per_layer_se=MappingProxyType(layer_se),
        per_layer_replicates=MappingProxyType(layer_reps),
    )
