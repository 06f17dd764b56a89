"""Pass or fail: one check's expectation against one measurement; pure, so hooks and reports share it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from geomcheck.paths import printable
from geomcheck.spec.layers import format_blocks

if TYPE_CHECKING:
    from geomcheck.properties.base import Measurement
    from geomcheck.spec.schema import Check, Expectation

Status = Literal["passed", "failed", "skipped", "error"]
MAX_LISTED_LAYERS = 8


@dataclass(frozen=True)
class Outcome:
    """What a check came to. ``headline`` is the one line a person acts on; ``details`` follow it."""

    status: Status
    headline: str
    details: tuple[str, ...] = ()
    value: float | None = None
    per_layer: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    failing_layers: tuple[int, ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @classmethod
    def skip(cls, reason: str, *, check: Check | None = None, model: str | None = None) -> Outcome:
        """A check that does not apply (spec meant for other models, or the property said why).

        With ``check`` and ``model`` the headline names them: ``prop[model] skipped: reason (file:line)``.
        """
        if check is None or model is None:
            return cls("skipped", reason)
        return cls("skipped", f"{_subject(check, model)} skipped: {reason} ({check.location})", _context(check, []))

    def properties(self) -> tuple[tuple[str, object], ...]:
        """Name-value pairs for pytest's ``user_properties`` (and so JUnit XML)."""
        pairs: list[tuple[str, object]] = [("geomcheck_status", self.status), ("geomcheck_headline", self.headline)]
        if self.value is not None:
            pairs.append(("geomcheck_value", self.value))
        if self.failing_layers:
            pairs.append(("geomcheck_failing_layers", ",".join(map(str, self.failing_layers))))
        return tuple(pairs)


def evaluate(check: Check, measurement: Measurement, *, model: str, spec_path: str | None = None) -> Outcome:
    """Compare ``measurement`` with ``check.expect``; an invalid measurement or a NaN value fails.

    ``model`` is the name shown in the headline (``first_position_norm[smollm2-135m] = ...``);
    ``spec_path`` replaces the file shown in ``(specs/llama.yaml:22)`` (default: ``check.file``).
    Bounds are inclusive. ``on: per_layer`` passes when at least ``mostly`` (default 1) of the
    layers pass, counted as ``ceil(mostly * n)`` layers and never fewer than one.
    """
    if spec_path is not None and spec_path != check.file:
        check = check.model_copy(update={"file": spec_path})
    if measurement.property != check.property:
        return errored(check, model=model, reason=f"got a measurement of {measurement.property!r}, not {check.property!r}")
    if not measurement.valid:
        return Outcome(
            "failed",
            f"{_subject(check, model)} could not be measured: {measurement.reason or 'no reason given'} ({check.location})",
            _context(check, [f"expected {check.expect.condition()} {_scope(check, measurement.layers)}",
                             "an invalid measurement fails the check rather than passing it silently"]),
        )
    metric = measurement.metrics.get(check.metric)
    if metric is None:
        reported = ", ".join(measurement.metrics) or "none"
        return errored(check, model=model, reason=f"the property reported no metric {check.metric!r} (reported: {reported})")
    if check.expect.on == "aggregate":
        outcome = _aggregate(check, model, metric.aggregate, measurement.layers, metric.se,
                             getattr(measurement, "aggregate_source", None))
    else:
        outcome = _per_layer(check, model, metric.per_layer)
    notes = tuple(getattr(measurement, "notes", ()))
    return replace(outcome, details=notes + outcome.details) if notes else outcome


def errored(check: Check, *, model: str, reason: str) -> Outcome:
    """A check that could not be evaluated because of a fault, not because the model failed it."""
    return Outcome("error", f"{_subject(check, model)}: {reason} ({check.location})", _context(check, []))


def _aggregate(
    check: Check, model: str, value: float | None, layers: tuple[int, ...], se: float | None = None, source: str | None = None
) -> Outcome:
    if value is None:
        return errored(check, model=model, reason=f"metric {check.metric!r} has no aggregate value; compare it with `on: per_layer`")
    expect = check.expect
    passed = expect.admits(value)
    where = f" from {source}" if source else f" over {format_blocks(layers)}" if layers else ""
    noise = f" ± {se:.2g}" if se is not None and math.isfinite(se) and se > 0 else ""
    headline = f"{_subject(check, model)} = {format_value(value, expect)}{noise}{where}, expected {expect.condition()} ({check.location})"
    lines = [] if math.isfinite(value) else ["the measured value is not finite, which never passes"]
    return Outcome("passed" if passed else "failed", headline, _context(check, lines), value=value)


def _per_layer(check: Check, model: str, per_layer: Mapping[int, float]) -> Outcome:
    expect = check.expect
    values = {int(layer): float(v) for layer, v in sorted(per_layer.items())}
    if not values:
        return errored(check, model=model, reason=f"metric {check.metric!r} has no per-layer values; compare it with `on: aggregate`")
    failing = tuple(layer for layer, v in values.items() if not expect.admits(v))
    n, n_pass = len(values), len(values) - len(failing)
    needed = max(1, math.ceil(expect.fraction * n - 1e-9))
    passed = n_pass >= needed
    scope = format_blocks(values)
    if expect.mostly is not None:
        scope = f"at least {expect.mostly:.0%} of {scope}"
    shown = failing if failing else tuple(values)
    headline = (
        f"{_subject(check, model)} = {_values_text([values[layer] for layer in shown], expect)} at {format_blocks(shown)}, "
        f"expected {expect.condition()} in {scope} ({check.location})"
    )
    lines = [f"{n_pass} of {n} blocks within bounds; {needed} needed"]
    for layer in failing[:MAX_LISTED_LAYERS]:
        lines.append(f"block {layer}: {format_value(values[layer], expect)}")
    if len(failing) > MAX_LISTED_LAYERS:
        lines.append(f"... and {len(failing) - MAX_LISTED_LAYERS} more failing blocks")
    return Outcome(
        "passed" if passed else "failed",
        headline,
        _context(check, lines),
        per_layer=MappingProxyType(values),
        failing_layers=failing,
    )


def _subject(check: Check, model: str) -> str:
    name = check.property if check.metric_is_default else f"{check.property}.{check.metric}"
    return f"{name}[{model}]"


def _scope(check: Check, layers: tuple[int, ...]) -> str:
    return f"in {format_blocks(layers)}" if layers else "in the selected blocks"


def _context(check: Check, lines: Iterable[str]) -> tuple[str, ...]:
    extra = [f"check {check.id!r}: {check.metric} ({check.expect.on})"]
    if check.reason:
        extra.append(f"reason: {printable(check.reason)}")  # written by whoever edits the spec: no escapes reach a terminal
    return tuple(lines) + tuple(extra)


def _values_text(values: list[float], expect: Expectation) -> str:
    finite = [v for v in values if math.isfinite(v)]
    nonfinite = sorted({_plain(v) for v in values if not math.isfinite(v)})
    parts = []
    if finite:
        low, high = format_value(min(finite), expect), format_value(max(finite), expect)
        parts.append(low if low == high else f"{low} to {high}")
    parts.extend(nonfinite)
    return ", ".join(parts)


def format_value(value: float, expect: Expectation | None = None) -> str:
    """Three significant digits, more when needed to tell the value apart from a bound it misses."""
    if not math.isfinite(value):
        return _plain(value)
    bounds = [b for b in ((expect.lower, expect.upper) if expect is not None else ()) if b is not None]
    for digits in range(3, 16):
        text = f"{value:.{digits}g}"
        if all(value == bound or text != f"{bound:.{digits}g}" for bound in bounds):
            return text
    return repr(value)


def _plain(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
