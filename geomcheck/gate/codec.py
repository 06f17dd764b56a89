"""A check's baseline record, to JSON and back: what a check gates, and a strict reading of what was recorded.

Reading is strict because a baseline is committed by whoever opens a pull request: an entry whose
``gated`` block was deleted, emptied, or reduced to fewer values than the check gates must not turn the
drift test off while the run still says "baseline compared". Every such edit is a BaselineError naming
the file, the check and what is missing; the store (gate.store) also refuses duplicate JSON keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from geomcheck import __version__
from geomcheck.errors import GeomcheckError
from geomcheck.gate.drift import GatedValue
from geomcheck.properties.base import Measurement, Metric
from geomcheck.spec.schema import Check

FORMAT = 2
MAX_REPLICATES = 1_000


class BaselineError(GeomcheckError, ValueError):
    """A recorded baseline that cannot be trusted as it is; the message names the file, the check and the remedy."""


def gated_values(check: Check, measurement: Measurement) -> list[GatedValue]:
    """The values of ``measurement`` that ``check`` gates: its metric's aggregate, or each layer's value."""
    metric = measurement.metrics.get(check.metric)
    if metric is None:
        return []
    if check.gates_per_layer:
        return [
            GatedValue(f"{check.metric} block {layer}", value, metric.per_layer_se.get(layer), metric.per_layer_replicates.get(layer))
            for layer, value in sorted(metric.per_layer.items())
        ]
    return [GatedValue(f"{check.metric} aggregate", metric.aggregate, metric.se, metric.replicates)]


def entry(check: Check, measurement: Measurement, inputs: Mapping[str, object], model: Mapping[str, object]) -> dict[str, object]:
    """One check's baseline record."""
    return {
        "property": measurement.property,
        "metric": check.metric,
        "valid": measurement.valid,
        "reason": measurement.reason,
        "gated": {
            "on": "per_layer" if check.gates_per_layer else "aggregate",
            "values": {value.where: _gated(value) for value in gated_values(check, measurement)},
        },
        "metrics": {name: _metric(metric) for name, metric in sorted(measurement.metrics.items())},
        "inputs": dict(inputs),
        "model": dict(model),
    }


def _metric(metric: Metric) -> dict[str, object]:
    return {
        "aggregate": _pair(metric.aggregate, metric.se),
        "per_layer": {str(layer): _pair(value, metric.per_layer_se.get(layer)) for layer, value in sorted(metric.per_layer.items())},
    }


def _gated(value: GatedValue) -> dict[str, object]:
    """A gated value with its error and its leave-one-group-out replicates (for a paired test on the same inputs)."""
    replicates = [_plain(r) for r in value.replicates] if value.replicates else None
    return {**_pair(value.value, value.se), "replicates": replicates}


def _pair(value: float | None, se: float | None) -> dict[str, float | None]:
    return {"value": _plain(value), "se": _plain(se)}


def _plain(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.9g}")


def recorded_values(recorded: Mapping[str, object], where: str = "the baseline entry") -> list[GatedValue]:
    """The gated values a check recorded, each a number (or null) with its error and replicates.

    Anything else is a BaselineError naming ``where``: a missing or empty ``gated.values``, an entry that
    is not an object, a value, error or replicate that is not a finite number of sensible size.
    """
    gated = recorded.get("gated") if isinstance(recorded, Mapping) else None
    values = gated.get("values") if isinstance(gated, Mapping) else None
    if not isinstance(values, Mapping) or not values:
        raise BaselineError(f"{where} gates no values (its 'gated.values' is missing or empty)")
    found = []
    for name, item in values.items():
        if not isinstance(item, Mapping):
            raise BaselineError(f"{where}: gated value {name!r} is {type(item).__name__}, not an object with value and se")
        value, se = _number(item.get("value"), f"{where}: {name}.value"), _number(item.get("se"), f"{where}: {name}.se")
        replicates = item.get("replicates")
        if replicates is not None:
            if not isinstance(replicates, list) or len(replicates) > MAX_REPLICATES:
                raise BaselineError(f"{where}: {name}.replicates must be a list of at most {MAX_REPLICATES} numbers")
            replicates = tuple(_number(r, f"{where}: {name}.replicates") for r in replicates)
            if any(r is None for r in replicates):
                replicates = None
        found.append(GatedValue(str(name), value, se, replicates))
    return found


def recorded_profile(recorded: Mapping[str, object], names: tuple[str, ...], where: str = "the baseline entry") -> dict[str, dict[int, float | None]]:
    """The recorded per-block values of the metrics ``names`` (the paired profile test's baseline side).

    Strict like ``recorded_values``: a profile metric whose per-block values were deleted or emptied would
    switch the profile test off, so each must be there, keyed by block number, each value a number or null.
    """
    metrics = recorded.get("metrics") if isinstance(recorded, Mapping) else None
    found: dict[str, dict[int, float | None]] = {}
    for name in names:
        metric = metrics.get(name) if isinstance(metrics, Mapping) else None
        per_layer = metric.get("per_layer") if isinstance(metric, Mapping) else None
        if not isinstance(per_layer, Mapping) or not per_layer:
            raise BaselineError(f"{where} has no per-block values of {name!r} ('metrics.{name}.per_layer'), which the paired "
                                "profile test reads; re-record it with --geom-update")
        if len(per_layer) > MAX_REPLICATES:
            raise BaselineError(f"{where}: metrics.{name}.per_layer holds {len(per_layer)} blocks, more than {MAX_REPLICATES}")
        values: dict[int, float | None] = {}
        for block, item in per_layer.items():
            if not (isinstance(block, str) and block.isascii() and block.isdigit()) or not isinstance(item, Mapping):
                raise BaselineError(f"{where}: metrics.{name}.per_layer has entry {block!r}: {item!r}, not a block number with a value")
            values[int(block)] = _number(item.get("value"), f"{where}: metrics.{name}.per_layer.{block}.value")
        found[name] = values
    return found


def _number(value: object, where: str) -> float | None:
    """A recorded number: null (undefined then), or a finite float of ordinary size; bools and strings are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)) or abs(float(value)) > 1e300:
        raise BaselineError(f"{where} is {value!r}, not a finite number")
    return float(value)


def document(model: str, spec_name: str, entries: Mapping[str, dict[str, object]]) -> dict[str, object]:
    return {"format": FORMAT, "model": model, "spec": spec_name, "geomcheck": __version__, "checks": dict(sorted(entries.items()))}


