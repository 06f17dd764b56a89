"""A check's measurement against its recorded baseline: the drift test, or a fixed band when the spec sets one.

A baseline is one JSON file per (model, spec) (gate.store). Each check records the values it gates
(its metric's aggregate, or every layer's value when the spec gates per layer) with their standard
errors, every other metric for reference, and fingerprints of the inputs and of the model, so a
reader can tell what the numbers were measured on (gate.codec). Keys are sorted and each number sits
on its own line, so a changed value is a one-line diff in review. This module compares; the codec and
the store are re-exported here, the names callers use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from geomcheck.gate.codec import FORMAT, BaselineError, document, entry, gated_values, recorded_profile, recorded_values
from geomcheck.gate.drift import DEFAULT_ALPHA, DEFAULT_DEGREES, DriftResult, DriftRow, DriftSettings, GatedValue, drift_test
from geomcheck.gate.profile import largest_first, profile_test
from geomcheck.gate.store import FILE_MODE, baseline_path, locked, merge_and_write, read, write_atomic
from geomcheck.properties.base import Measurement, PropertyDef
from geomcheck.spec.schema import Check

__all__ = [
    "FILE_MODE", "FORMAT", "BaselineError", "BaselineVerdict", "against", "baseline_path", "document", "entry", "gated_values",
    "locked", "merge_and_write", "read", "recorded_values", "same_inputs", "settings_for", "write_atomic",
]


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
        # A floor the spec states is the user's word in both modes; otherwise paired runs use the measured one.
        paired_floor=None if floor is not None else prop.paired_floors.get(check.metric),
    )


@dataclass(frozen=True)
class BaselineVerdict:
    """A check against its recorded baseline: the drift test's rows and any structural problem."""

    result: DriftResult | None
    problems: tuple[str, ...] = ()
    paired: bool = False
    profile: DriftResult | None = None  # the paired profile test (gate.profile); None unpaired or switched off

    @property
    def alarms(self) -> tuple[str, ...]:
        rows = self.result.alarms if self.result is not None else ()
        moved = largest_first(self.profile.alarms) if self.profile is not None else []
        return (*self.problems, *(row.describe() for row in rows), *(row.describe() for row in moved))

    @property
    def tested(self) -> int:
        """Gated values the drift test saw (the profile's block values are counted apart: ``profile_tested``)."""
        return self.result.tested if self.result is not None else 0

    @property
    def profile_tested(self) -> int:
        return self.profile.tested if self.profile is not None else 0


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
    two sides' replicates taken jointly, which cancels the sampling noise the inputs share, and every
    block's value of the property's profile metrics is held to its floor too (gate.profile), which is
    what sees local damage that leaves the aggregates in place.
    """
    problems = []
    where = f"the baseline entry of check {check.id!r}"
    then = recorded_values(recorded, where)  # BaselineError when the entry gates nothing or is malformed
    now = gated_values(check, measurement)
    missing = sorted({value.where for value in now} - {value.where for value in then})
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise BaselineError(f"{where} gates {len(then)} value(s) but the check gates {len(now)}; not recorded: {shown}. "
                            "Re-record it with --geom-update")
    if recorded.get("metric") not in (None, check.metric):
        problems.append(f"the baseline gates metric {recorded.get('metric')!r}, the check now {check.metric!r}; re-record it")
    if bool(recorded.get("valid")) != measurement.valid:
        problems.append(f"validity changed: baseline valid={recorded.get('valid')}, now valid={measurement.valid} ({measurement.reason})")
    degrees = _degrees(recorded)
    settings = settings_for(check, prop, degrees)
    if check.tolerance is not None:  # the explicit override: a fixed band, no statistics
        settings = DriftSettings(alpha=1.0, min_abs=check.tolerance.abs, min_rel=check.tolerance.rel,
                                 integer=settings.integer, degrees=degrees)
        return BaselineVerdict(_band_test(then, now, settings), tuple(problems))
    paired = same_inputs(recorded, inputs)
    profile = None
    names = tuple(spec.name for spec in prop.metric_specs if spec.paired_floor is not None and spec.per_layer and measurement.metrics.get(spec.name)
                  and measurement.metrics[spec.name].per_layer)
    if paired and check.gate.profile is not False and names:
        profile = profile_test(prop, recorded_profile(recorded, names, where), measurement)
    return BaselineVerdict(drift_test(then, now, settings, paired=paired), tuple(problems), paired, profile)


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


