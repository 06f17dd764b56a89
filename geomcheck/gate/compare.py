"""Two checkpoints' results side by side, check by check, gated on regressions (the run itself: geomcheck.compare_run).

Both models run in one session, so every check reads the same InputSpec for A and B (and, when
the tokenizers agree, the same token ids). A check *regresses* when it passes on A and fails on B;
every check is gated, so one regression makes the exit code 1. Values that moved beyond input noise
(the paired drift test of geomcheck.gate.drift, A read as B's baseline) are reported but do not gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from geomcheck import properties
from geomcheck.capture.inputs import InputSpec
from geomcheck.exit_codes import REGRESSED, ExitCode
from geomcheck.gate.baseline import gated_values, settings_for
from geomcheck.gate.drift import DriftResult, DriftRow, drift_test
from geomcheck.gate.profile import largest_first, profile_of, profile_test
from geomcheck.gate.results import CheckResult
from geomcheck.spec.expect import format_value
from geomcheck.spec.schema import Check, Spec

Change = Literal["regressed", "fixed", "unchanged", "changed"]
EXIT_OK, EXIT_REGRESSED, EXIT_ERROR = ExitCode.OK, REGRESSED, ExitCode.ERROR


@dataclass(frozen=True)
class CheckComparison:
    """One check on A and on B. ``drift`` lists B's gated values that moved beyond input noise and the
    check's smallest relevant change (the paired drift test); ``noise`` is that test in full."""

    spec: Spec
    check: Check
    a: CheckResult
    b: CheckResult
    drift: tuple[str, ...]
    noise: DriftResult | None = None
    profile: DriftResult | None = None  # every block of the property's profile metrics, when A and B read the same token ids

    @property
    def largest(self) -> DriftRow | None:
        """The gated value that moved most in paired standard errors (a per-layer check: its worst block, not its first)."""
        if self.noise is None or not self.noise.rows:
            return None
        return max(self.noise.rows, key=lambda row: (row.alarm, abs(row.effect) if row.effect is not None else abs(row.delta or 0.0)))

    @property
    def effect(self) -> float | None:
        """B - A of the most-moved gated value in paired standard errors (None when no error is known)."""
        return self.largest.effect if self.largest is not None else None

    def effect_text(self) -> str:
        """The table's effect cell: ``-25.9 SE at block 14``; ``identical`` when nothing moved; the raw change without an SE."""
        row = self.largest
        if row is None or row.delta is None:
            return "—"
        if row.delta == 0:
            return "identical"
        at = f" at {row.where.split(' ', 1)[1]}" if " block " in row.where else ""
        if row.effect is None:
            return f"{row.delta:+.4g} (no SE){at}"
        return f"{row.effect:+.1f} SE{at}"

    @property
    def change(self) -> Change:
        before, after = self.a.outcome.status, self.b.outcome.status
        if before == "passed" and after == "failed":
            return "regressed"
        if before == "failed" and after == "passed":
            return "fixed"
        return "unchanged" if before == after else "changed"

    @property
    def gated(self) -> bool:
        """Whether this check blocks B: it passed on A and fails on B."""
        return self.change == "regressed"

    @property
    def values(self) -> tuple[float | None, float | None]:
        return checked_value(self.a), checked_value(self.b)

    @property
    def delta(self) -> float | None:
        """B - A of the checked metric's aggregate (or mean over blocks when it has none)."""
        a, b = self.values
        return b - a if a is not None and b is not None and math.isfinite(a) and math.isfinite(b) else None

    @property
    def moved_blocks(self) -> list[DriftRow]:
        """The profile's blocks that moved past their floors, furthest first: where to look for the bug."""
        return largest_first(self.profile.alarms) if self.profile is not None else []

    @property
    def largest_block_delta(self) -> tuple[int, float] | None:
        """The block where the checked metric moved most, and by how much (B - A)."""
        a, b = per_layer(self.a), per_layer(self.b)
        shared = [(layer, b[layer] - a[layer]) for layer in a.keys() & b.keys() if math.isfinite(b[layer] - a[layer])]
        return max(shared, key=lambda item: abs(item[1])) if shared else None


@dataclass(frozen=True)
class InputComparison:
    """One input set and whether A and B read the same token ids from it."""

    spec: InputSpec
    description: str
    shape: tuple[int, int]
    same_tokens: bool


@dataclass(frozen=True)
class Comparison:
    """Every check of every spec on A and B."""

    ref_a: str
    ref_b: str
    rows: tuple[CheckComparison, ...]
    inputs: tuple[InputComparison, ...] = ()
    fail_on_drift: bool = False  # exit 1 also when values moved beyond noise and floor (``--fail-on-drift``)

    @property
    def regressions(self) -> tuple[CheckComparison, ...]:
        return tuple(row for row in self.rows if row.gated)

    @property
    def errors(self) -> tuple[CheckComparison, ...]:
        return tuple(row for row in self.rows if "error" in (row.a.outcome.status, row.b.outcome.status))

    def count(self, change: Change) -> int:
        return sum(row.change == change for row in self.rows)

    @property
    def drifted(self) -> tuple[CheckComparison, ...]:
        return tuple(row for row in self.rows if row.drift)

    @property
    def exit_code(self) -> int:
        """3 when a check could not be evaluated, else 1 when one regressed (or, with ``fail_on_drift``, moved), else 0."""
        if self.errors:
            return EXIT_ERROR
        if self.regressions or (self.fail_on_drift and self.drifted):
            return EXIT_REGRESSED
        return EXIT_OK


def checked_value(result: CheckResult) -> float | None:
    """The aggregate of the metric a check constrains; the mean over blocks when it has only per-block values."""
    metric = result.measurement.metrics.get(result.check.metric) if result.measurement is not None else None
    if metric is None:
        return None
    if metric.aggregate is not None:
        return float(metric.aggregate)
    values = [float(v) for v in metric.per_layer.values() if math.isfinite(v)]
    return float(np.mean(values)) if values else None


def per_layer(result: CheckResult) -> dict[int, float]:
    metric = result.measurement.metrics.get(result.check.metric) if result.measurement is not None else None
    return {int(layer): float(value) for layer, value in sorted(metric.per_layer.items())} if metric is not None else {}


def paired_drift(a: CheckResult, b: CheckResult, same_tokens: bool = True) -> DriftResult | None:
    """B's gated values against A's, paired: both saw identical inputs, so the noise of the difference is
    estimated from the two sides' leave-one-group-out replicates taken jointly."""
    if a.measurement is None or b.measurement is None:
        return None
    prop = properties.get(a.check.property)
    return drift_test(gated_values(a.check, a.measurement), gated_values(b.check, b.measurement), settings_for(a.check, prop), paired=same_tokens)


def paired_profile(a: CheckResult, b: CheckResult) -> DriftResult | None:
    """B's per-block profile values against A's (gate.profile); only meaningful on identical token ids."""
    if a.measurement is None or b.measurement is None or not a.measurement.valid or a.check.gate.profile is False:
        return None
    prop = properties.get(a.check.property)
    return profile_test(prop, profile_of(prop, a.measurement), b.measurement)


def compare_pair(a: CheckResult, b: CheckResult, same_tokens: bool = True) -> CheckComparison:
    """One check's row: outcomes on A and B, the paired drift test, and (on identical token ids) the profile test."""
    noise = paired_drift(a, b, same_tokens)
    profile = paired_profile(a, b) if same_tokens else None
    drift = tuple(row.describe() for row in noise.alarms) if noise is not None else ()
    if profile is not None:
        drift += tuple(row.describe() for row in largest_first(profile.alarms))
    return CheckComparison(a.spec, a.check, a, b, drift, noise, profile)


def _value(value: float | None, check: Check) -> str:
    return "—" if value is None else format_value(value, check.expect)


def summary_table(comparison: Comparison) -> str:
    """The plain-text table ``geomcheck compare`` prints: one line per check, then the gate's verdict."""
    header = ("check", "metric", f"A: {comparison.ref_a}", f"B: {comparison.ref_b}", "B - A", "effect", "beyond noise", "change")
    lines = []
    for row in comparison.rows:
        a, b = row.values
        lines.append((
            row.check.id,
            row.check.metric,
            f"{row.a.outcome.status} {_value(a, row.check)}",
            f"{row.b.outcome.status} {_value(b, row.check)}",
            "—" if row.delta is None else f"{row.delta:+.4g}",
            row.effect_text(),
            f"{len(row.drift)} of {_tested(row)}" if row.drift else "no",
            row.change.upper() if row.change == "regressed" else row.change,
        ))
    widths = [max(len(cells[i]) for cells in (header, *lines)) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in (header, *lines)]
    text.insert(1, "  ".join("-" * width for width in widths))
    moved = sum(bool(row.drift) for row in comparison.rows)
    text.append("")
    text.append(f"{len(comparison.rows)} checks: {comparison.count('regressed')} regressed, {comparison.count('fixed')} fixed, "
                f"{comparison.count('unchanged')} unchanged, {comparison.count('changed')} changed otherwise; "
                f"{moved} moved beyond input noise and their smallest relevant change (paired test)")
    for item in comparison.inputs:
        if not item.same_tokens:
            text.append(f"note: A and B tokenised {item.description} differently; same inputs, different token ids")
    if comparison.errors:
        text.append(f"gate: ERROR, {len(comparison.errors)} check(s) could not be evaluated: "
                    + ", ".join(row.check.id for row in comparison.errors))
    elif comparison.regressions:
        text.append(f"gate: FAILED, {len(comparison.regressions)} check(s) passed on A and fail on B: "
                    + ", ".join(row.check.id for row in comparison.regressions))
    elif comparison.fail_on_drift and comparison.drifted:
        text.append(f"gate: FAILED (--fail-on-drift), {len(comparison.drifted)} check(s) moved beyond noise and floor: "
                    + ", ".join(row.check.id for row in comparison.drifted))
    else:
        text.append("gate: passed, no check flipped from passed to failed"
                    + (", none moved beyond noise and floor" if comparison.fail_on_drift else ""))
    moved = [(row, cell) for row in comparison.rows for cell in row.moved_blocks]
    if moved:
        text.append("blocks that moved past their floors (paired profile), furthest first:")
        ranked = largest_first([cell for _, cell in moved])
        owner = {id(cell): row for row, cell in moved}
        for cell in ranked[:10]:
            text.append(f"  {owner[id(cell)].check.id}: {cell.describe()}")
        if len(ranked) > 10:
            text.append(f"  ... and {len(ranked) - 10} more")
    return "\n".join(text)


def _tested(row: CheckComparison) -> int:
    return sum(result.tested for result in (row.noise, row.profile) if result is not None)
