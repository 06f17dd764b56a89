"""The drift test: has a gated value moved from its baseline by more than input noise and more than matters?

Each gated value is tested on its own,

    alarm  <=>  |new - old| > min_change  and  Holm-adjusted p < alpha,

where the p-value comes from t = |new - old| / sqrt(se_new^2 + se_old^2) with the jackknife's
G - 1 degrees of freedom (or from the paired standard error when both sides saw the same inputs).
Holm's step-down correction over the values of one check keeps the check's false-alarm rate at
``alpha`` however many blocks it gates. ``min_change`` is the smallest change worth an alarm
however significant: a bfloat16 round trip moves values by a hair with tiny standard errors, and
that is no regression. Integer metrics (block indices) use a continuity-corrected statistic and a
floor in whole blocks.

On the baseline's own token ids (paired) the input noise cancels, and the paired standard error
falls to the level of floating-point rounding: a p-value there says nothing, and a bf16 round trip
would be "significant" at thousands of SE. So a paired decision rests on stated quantities: the
standard error is never taken below the measurement's numerical resolution (``NUMERIC_RESOLUTION``
of the value, so a bit-identical side gives p = 1 and rounding cannot give p = 0), and the floor is
the metric's ``paired_floor`` where it declares one, set from the measured spread of harmless
numerical changes (bf16, fp16 and Q8_0 round trips, a re-save) rather than the fresh-input floor.
The alarm text gives both, and how far past the floor the change went.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

DEFAULT_ALPHA = 0.01
DEFAULT_DEGREES = 7  # G - 1 for the default 8 sequence groups
# Relative size below which two measurements of one value cannot be told apart: float32 activations reduced
# in float64 agree to ~1e-7 between BLAS builds and thread counts; a paired SE is never taken below this.
NUMERIC_RESOLUTION = 1e-6


@dataclass(frozen=True)
class GatedValue:
    """One value a check gates: where it sits (``aggregate`` or ``block 12``), its value and standard error."""

    where: str
    value: float | None
    se: float | None = None
    replicates: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DriftSettings:
    """How one check is gated: the family-wise false-alarm rate and the smallest change that matters."""

    alpha: float = DEFAULT_ALPHA
    min_abs: float = 0.0
    min_rel: float = 0.0
    integer: bool = False
    degrees: int = DEFAULT_DEGREES
    paired_floor: tuple[float, float] | None = None  # (abs, rel) on the baseline's own inputs; None: min_change there too

    def floor(self, baseline: float, paired: bool = False) -> float:
        low_abs, low_rel = self.paired_floor if paired and self.paired_floor is not None else (self.min_abs, self.min_rel)
        return low_abs + low_rel * abs(baseline)

    def describe(self, paired: bool = False) -> str:
        parts = [f"alpha {self.alpha:g} (Holm)"]
        if paired and self.paired_floor is not None:
            parts.append(f"changes within ±({self.paired_floor[0]:g} + {self.paired_floor[1]:g}·|baseline|) ignored "
                         "(paired floor: ten times the largest harmless numerical change measured)")
        elif self.min_abs or self.min_rel:
            parts.append(f"changes within ±({self.min_abs:g} + {self.min_rel:g}·|baseline|) ignored")
        return ", ".join(parts)


@dataclass(frozen=True)
class DriftRow:
    """The test of one gated value."""

    where: str
    baseline: float | None
    now: float | None
    se: float | None
    p_value: float
    floor: float
    alarm: bool
    note: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.now is None:
            return None
        return self.now - self.baseline

    @property
    def effect(self) -> float | None:
        """The change in standard errors (None without a standard error)."""
        if self.delta is None or not self.se:
            return None
        return self.delta / self.se

    def describe(self) -> str:
        if self.note.startswith("paired profile") and self.delta is not None:
            relative = f", {100 * self.delta / abs(self.baseline):+.1f} %" if self.baseline else ""
            return (f"{self.where}: {_show(self.now)} vs baseline {_show(self.baseline)} "
                    f"(change {self.delta:+.4g}{relative}; {self.note}, floor {self.floor:.3g})")
        if self.delta is None:
            return f"{self.where}: {_show(self.now)} vs baseline {_show(self.baseline)} ({self.note})"
        noise = f" ± {self.se:.3g}" if self.se is not None and math.isfinite(self.se) else ""
        effect = f", {self.effect:+.1f} SE" if self.effect is not None else ""
        share = f", {abs(self.delta) / self.floor:.1f} x the floor" if self.floor > 0 else ""
        kind = f"; {self.note}" if self.note else ""
        return (f"{self.where}: {_show(self.now)} vs baseline {_show(self.baseline)} "
                f"(change {self.delta:+.4g}{noise}{effect}; p={self.p_value:.2g}; floor {self.floor:.3g}{share}{kind})")


@dataclass(frozen=True)
class DriftResult:
    """Every gated value of one check, tested; ``alarms`` are the ones that fail the gate."""

    rows: tuple[DriftRow, ...]
    settings: DriftSettings

    @property
    def alarms(self) -> tuple[DriftRow, ...]:
        return tuple(row for row in self.rows if row.alarm)

    @property
    def tested(self) -> int:
        return len(self.rows)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections: the i-th smallest p is compared with alpha / (m - i) until one fails."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected


def p_value(delta: float, se: float | None, *, integer: bool, degrees: int) -> float:
    """Two-sided p-value of a change ``delta`` with standard error ``se`` (t with ``degrees`` df)."""
    size = abs(delta) - (0.5 if integer else 0.0)
    if size <= 0:
        return 1.0
    if se is None or not math.isfinite(se):
        return 0.0  # no noise estimate: the floor alone decides
    if se == 0:
        return 0.0
    return float(2 * stats.t.sf(size / se, df=max(degrees, 1)))


def combined_se(a: float | None, b: float | None) -> float | None:
    known = [x for x in (a, b) if x is not None and math.isfinite(x)]
    if not known:
        return None
    return math.sqrt(sum(x * x for x in known))


def drift_test(
    recorded: Sequence[GatedValue],
    current: Sequence[GatedValue],
    settings: DriftSettings,
    *,
    paired: bool = False,
) -> DriftResult:
    """Test each recorded value against the current one at the same place.

    ``paired``: both sides were measured on identical inputs with identical sequence groups, so the
    standard error of the difference comes from the paired replicates.
    """
    from geomcheck.gate.uncertainty import paired_se

    now_by_place = {value.where: value for value in current}
    pending: list[tuple[str, float | None, float | None, float | None, float, str]] = []
    for old in recorded:
        new = now_by_place.get(old.where)
        then = _finite(old.value)
        now = _finite(new.value) if new is not None else None
        if then is None and now is None:
            continue
        if then is None or now is None:
            note = "defined now, undefined in the baseline" if then is None else "undefined now, defined in the baseline"
            pending.append((old.where, then, now, None, 0.0, note))
            continue
        se, note = None, ""
        if paired and new is not None and old.replicates and new.replicates:
            se = paired_se(old.replicates, new.replicates)
            if se is not None and math.isfinite(se):
                se, note = max(se, NUMERIC_RESOLUTION * max(abs(then), abs(now))), "paired"
        if se is None or not math.isfinite(se):
            se = combined_se(old.se, new.se if new is not None else None)
        delta = now - then
        pending.append((old.where, then, now, se, p_value(delta, se, integer=settings.integer, degrees=settings.degrees), note))
    rejected = holm([item[4] for item in pending], settings.alpha)
    rows = []
    for (where, then, now, se, p, note), significant in zip(pending, rejected):
        floor = settings.floor(then or 0.0, paired=paired)
        if then is None or now is None:
            alarm = True
        else:
            alarm = significant and abs(now - then) > floor
        rows.append(DriftRow(where, then, now, se, p, floor, alarm, note))
    return DriftResult(tuple(rows), settings)


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _show(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4g}"
