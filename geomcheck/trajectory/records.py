"""What one checkpoint measured, as stored in the trajectory cache, and what a trajectory of them shows.

Pure data and pure functions: a record is built from a session's results, written as JSON, read
back, and the analysis (first pass, last failure, regressions) reads only records and the spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from geomcheck.gate.results import CheckResult
from geomcheck.spec.schema import Spec

RECORD_FORMAT = 1


@dataclass(frozen=True)
class CheckPoint:
    """One check measured on one checkpoint: the outcome and the check's metric with its standard errors."""

    status: str
    headline: str
    value: float | None = None
    se: float | None = None
    per_layer: dict[int, float] = field(default_factory=dict)
    per_layer_se: dict[int, float] = field(default_factory=dict)
    failing_layers: tuple[int, ...] = ()
    details: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint measured against one spec; ``checks`` by check id in spec order."""

    reference: str
    label: str
    step: int | None
    spec_name: str
    cache_key: str
    checks: dict[str, CheckPoint]
    model: dict[str, str] = field(default_factory=dict)
    inputs: tuple[dict[str, object], ...] = ()
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["format"] = RECORD_FORMAT
        for check in data["checks"].values():
            check["per_layer"] = {str(k): v for k, v in check["per_layer"].items()}
            check["per_layer_se"] = {str(k): v for k, v in check["per_layer_se"].items()}
        return _finite(data)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CheckpointRecord:
        """Raises KeyError, TypeError or ValueError on a record of another format (the cache then measures again)."""
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {data.get('format')!r}, expected {RECORD_FORMAT}")
        checks = {}
        for check_id, raw in dict(data["checks"]).items():
            checks[str(check_id)] = CheckPoint(
                status=str(raw["status"]),
                headline=str(raw["headline"]),
                value=_number(raw.get("value")),
                se=_number(raw.get("se")),
                per_layer={int(k): float(v) for k, v in raw.get("per_layer", {}).items() if v is not None},
                per_layer_se={int(k): float(v) for k, v in raw.get("per_layer_se", {}).items() if v is not None},
                failing_layers=tuple(int(b) for b in raw.get("failing_layers", ())),
                details=tuple(str(line) for line in raw.get("details", ())),
            )
        step = data.get("step")
        return cls(
            reference=str(data["reference"]),
            label=str(data["label"]),
            step=int(step) if step is not None else None,
            spec_name=str(data["spec_name"]),
            cache_key=str(data["cache_key"]),
            checks=checks,
            model={str(k): str(v) for k, v in dict(data.get("model", {})).items()},
            inputs=tuple(dict(item) for item in data.get("inputs", ())),
            seconds=float(data.get("seconds", 0.0)),
        )


def check_point(result: CheckResult) -> CheckPoint:
    """The stored form of one result: the outcome, and the check's metric (aggregate and per block) with errors."""
    outcome, m = result.outcome, result.measurement
    metric = m.metrics.get(result.check.metric) if m is not None and m.valid else None
    value = outcome.value if outcome.value is not None else (metric.aggregate if metric is not None else None)
    return CheckPoint(
        status=outcome.status,
        headline=outcome.headline,
        value=_number(value),
        se=_number(metric.se) if metric is not None else None,
        per_layer=_finite_map(metric.per_layer if metric is not None else outcome.per_layer),
        per_layer_se=_finite_map(metric.per_layer_se) if metric is not None else {},
        failing_layers=tuple(int(b) for b in outcome.failing_layers),
        details=tuple(outcome.details),
    )


@dataclass(frozen=True)
class Unusable:
    """A checkpoint that could not be measured at all (it does not load, its inputs do not fit, ...)."""

    reference: str
    label: str
    step: int | None
    reason: str


@dataclass(frozen=True)
class CheckHistory:
    """One check over the trajectory, in step order."""

    check_id: str
    statuses: tuple[str, ...]
    first_pass: str | None
    last_fail: str | None
    regressed: bool

    @property
    def latest(self) -> str | None:
        return self.statuses[-1] if self.statuses else None


def history(spec: Spec, records: Sequence[CheckpointRecord]) -> list[CheckHistory]:
    """For each check of ``spec``: its status at every measured checkpoint, the first one where it passed, the last
    one where it failed, and whether it regressed (the latest checkpoint fails it and an earlier one passed it)."""
    rows = []
    for check in spec.checks:
        statuses = tuple(record.checks[check.id].status if check.id in record.checks else "missing" for record in records)
        labels = [record.label for record in records]
        passed = [i for i, status in enumerate(statuses) if status == "passed"]
        failed = [i for i, status in enumerate(statuses) if status == "failed"]
        regressed = bool(statuses) and statuses[-1] == "failed" and any(i < len(statuses) - 1 for i in passed)
        rows.append(CheckHistory(check.id, statuses, labels[passed[0]] if passed else None,
                                 labels[failed[-1]] if failed else None, regressed))
    return rows


def _finite_map(values: Mapping[int, float]) -> dict[int, float]:
    """Per-block values without the non-finite ones (a block that could not be measured shows as a gap)."""
    return {int(k): float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def _number(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def _finite(value: object) -> object:
    """JSON has no NaN or infinity: they are stored as null (shown as "not measured")."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
