"""Recorded measurements of a checkpoint as distributions, and the comparison of a later run with them.

A baseline is one JSON file per (model, spec). Each check records the values it gates (its
metric's aggregate, or every layer's value when the spec gates per layer) with their standard
errors, every other metric for reference, and fingerprints of the inputs and of the model, so a
reader can tell what the numbers were measured on. Keys are sorted and each number sits on its
own line, so a changed value is a one-line diff in review.

Files are replaced atomically under an exclusive lock: an interrupted run leaves the previous
baseline or the new one, and two runs updating one file at once both keep their entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from geomcheck import __version__
from geomcheck.errors import GeomcheckError
from geomcheck.gate.drift import (
    DEFAULT_ALPHA,
    DEFAULT_DEGREES,
    DriftResult,
    DriftRow,
    DriftSettings,
    GatedValue,
    drift_test,
)
from geomcheck.paths import confined, safe_component, write_atomically
from geomcheck.properties.base import Measurement, Metric, PropertyDef
from geomcheck.spec.schema import Check

FORMAT = 2
FILE_MODE = 0o644


def baseline_path(root: Path, model_key: str, spec_name: str) -> Path:
    """``root/<model key>/<spec name>.json``, refused unless it resolves inside ``root``."""
    return confined(root, safe_component(model_key, "model"), f"{safe_component(spec_name, 'spec')}.json")


# ---------------------------------------------------------------- what a check gates


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


def settings_for(check: Check, prop: PropertyDef, degrees: int = DEFAULT_DEGREES) -> DriftSettings:
    """The check's gate settings: the spec's ``gate`` over the property's per-metric defaults."""
    floor = check.gate.min_change
    low_abs, low_rel = (floor.abs, floor.rel) if floor is not None else prop.min_change.get(check.metric, (0.0, 0.0))
    return DriftSettings(
        alpha=check.gate.alpha if check.gate.alpha is not None else DEFAULT_ALPHA,
        min_abs=low_abs,
        min_rel=low_rel,
        integer=check.metric in prop.integer_metrics,
        degrees=degrees,
    )


# ---------------------------------------------------------------- JSON entries


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


def recorded_values(recorded: Mapping[str, object]) -> list[GatedValue]:
    gated = recorded.get("gated")
    values = gated.get("values") if isinstance(gated, dict) else None
    if not isinstance(values, dict):
        return []
    gated = []
    for where, item in values.items():
        if not isinstance(item, dict):
            continue
        replicates = item.get("replicates")
        usable = isinstance(replicates, list) and all(isinstance(r, (int, float)) for r in replicates)
        gated.append(GatedValue(where, item.get("value"), item.get("se"), tuple(replicates) if usable else None))
    return gated


def document(model: str, spec_name: str, entries: Mapping[str, dict[str, object]]) -> dict[str, object]:
    return {"format": FORMAT, "model": model, "spec": spec_name, "geomcheck": __version__, "checks": dict(sorted(entries.items()))}


# ---------------------------------------------------------------- the comparison


@dataclass(frozen=True)
class BaselineVerdict:
    """A check against its recorded baseline: the drift test's rows and any structural problem."""

    result: DriftResult | None
    problems: tuple[str, ...] = ()
    paired: bool = False

    @property
    def alarms(self) -> tuple[str, ...]:
        rows = self.result.alarms if self.result is not None else ()
        return (*self.problems, *(row.describe() for row in rows))

    @property
    def tested(self) -> int:
        return self.result.tested if self.result is not None else 0


def same_inputs(recorded: Mapping[str, object], inputs: Mapping[str, object] | None) -> bool:
    """Whether a run read exactly the baseline's token ids, split into the same sequence groups."""
    then = recorded.get("inputs")
    if not isinstance(then, dict) or inputs is None or not then.get("token_ids_sha256"):
        return False
    return then.get("token_ids_sha256") == inputs.get("token_ids_sha256") and then.get("groups") == inputs.get("groups")


def against(
    check: Check,
    prop: PropertyDef,
    recorded: Mapping[str, object],
    measurement: Measurement,
    inputs: Mapping[str, object] | None = None,
) -> BaselineVerdict:
    """Test the check's gated values against their recorded distribution (or a fixed ``tolerance`` band).

    ``inputs``: this run's input fingerprint. When it shows the baseline's own token ids (the usual
    CI run of an unchanged spec), the test is paired: the noise of the difference comes from the
    two sides' replicates taken jointly, which cancels the sampling noise the inputs share.
    """
    problems = []
    if recorded.get("metric") not in (None, check.metric):
        problems.append(f"the baseline gates metric {recorded.get('metric')!r}, the check now {check.metric!r}; re-record it")
    if bool(recorded.get("valid")) != measurement.valid:
        problems.append(f"validity changed: baseline valid={recorded.get('valid')}, now valid={measurement.valid} ({measurement.reason})")
    degrees = _degrees(recorded)
    settings = settings_for(check, prop, degrees)
    if check.tolerance is not None:  # the explicit override: a fixed band, no statistics
        settings = DriftSettings(alpha=1.0, min_abs=check.tolerance.abs, min_rel=check.tolerance.rel,
                                 integer=settings.integer, degrees=degrees)
        return BaselineVerdict(_band_test(recorded_values(recorded), gated_values(check, measurement), settings), tuple(problems))
    paired = same_inputs(recorded, inputs)
    return BaselineVerdict(drift_test(recorded_values(recorded), gated_values(check, measurement), settings, paired=paired),
                           tuple(problems), paired)


def _degrees(recorded: Mapping[str, object]) -> int:
    inputs = recorded.get("inputs")
    groups = inputs.get("groups") if isinstance(inputs, dict) else None
    return max(int(groups) - 1, 1) if isinstance(groups, int) else DEFAULT_DEGREES


def _band_test(recorded: list[GatedValue], current: list[GatedValue], settings: DriftSettings) -> DriftResult:
    now = {value.where: value.value for value in current}
    rows = []
    for old in recorded:
        then, new = old.value, now.get(old.where)
        if then is None and (new is None or not math.isfinite(new)):
            continue
        floor = settings.floor(then or 0.0)
        if then is None or new is None or not math.isfinite(new):
            rows.append(DriftRow(old.where, then, None if new is None or not math.isfinite(new) else new, None, 0.0, floor, True,
                                 "defined on one side only"))
            continue
        rows.append(DriftRow(old.where, then, new, None, 1.0, floor, abs(new - then) > floor, "fixed tolerance"))
    return DriftResult(tuple(rows), settings)


# ---------------------------------------------------------------- files


def read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GeomcheckError(f"{path}:{exc.lineno}:{exc.colno}: baseline is not valid JSON ({exc.msg}); re-create it with --geom-update") from None
    if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
        raise GeomcheckError(f"{path}: not a geomcheck baseline; re-create it with --geom-update")
    if data.get("format") != FORMAT:
        raise GeomcheckError(
            f"{path}: baseline format {data.get('format')!r}, this geomcheck reads format {FORMAT} "
            "(values with standard errors); re-record it with --geom-update"
        )
    return data


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` (a sibling ``.lock`` file) for a read-merge-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def merge_and_write(path: Path, model: str, spec_name: str, entries: Mapping[str, dict[str, object]]) -> None:
    """Merge ``entries`` into the baseline at ``path`` under the lock, replacing it atomically."""
    with locked(path):
        _remove_stale_temporaries(path)
        merged = dict(read(path)["checks"]) if path.is_file() and _same_format(path) else {}
        merged.update(entries)
        write_atomic(path, document(model, spec_name, merged))


def _same_format(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of this target left by a killed writer (the lock is held, so none is live)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def write_atomic(path: Path, data: Mapping[str, object]) -> None:
    """The baseline document as sorted, one-number-per-line JSON, replaced atomically (paths.write_atomically)."""
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n", FILE_MODE)
