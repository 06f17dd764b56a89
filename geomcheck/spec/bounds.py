"""Where a check's bound belongs, from measurements of trained models and of their random twins.

A spec's threshold is a claim that trained models sit on one side of it and untrained ones on the
other. Written by hand it tends to encode the few models someone looked at (issue 26: a position-0
outlier of >= 20x held on two LLaMA-layout models and failed Gemma-3, whose outlier is 5-15x). So
bounds are fitted, the same way for ``geomcheck suggest`` (one model, its twin, fitted on one input
set and confirmed on another) and for the family calibration of the shipped specs (fitted on two
families, tested on the third):

- each measurement is reduced to the one number the verdict turns on (``judged``): the aggregate,
  or for ``on: per_layer`` the block value that decides ``mostly`` (the ceil(mostly * n)-th best);
- the bound sits between the weakest trained value and the strongest twin value, each moved
  ``z`` standard errors towards the other, at their geometric mean when both are positive (ratios
  span orders of magnitude) and at their midpoint otherwise;
- no bound exists when those two edges overlap: the check does not separate these models.

A twin whose value is NaN (a property that found nothing to measure, e.g. an onset that never
happens) fails any bound and does not constrain where it sits; with no finite twin the template's
own bound stands wherever the trained models sit inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from geomcheck.properties.base import Measurement
from geomcheck.spec.schema import Check

Side = Literal["min", "max"]


@dataclass(frozen=True)
class Judged:
    """The number a check's verdict turns on, its standard error (NaN: unknown) and where it came from."""

    value: float
    se: float
    where: str  # "aggregate", or "block 7" for a per-layer check

    def text(self) -> str:
        shown = f"{self.value:.4g}"
        if math.isfinite(self.se) and self.se > 0:
            shown += f" ± {self.se:.2g}"
        return shown if self.where == "aggregate" else f"{shown} ({self.where})"


def side(check: Check) -> Side | None:
    """Which way the check points: ``min`` (trained models above the bound), ``max``, or None for a range."""
    expect = check.expect
    if expect.between is not None or (expect.min is not None and expect.max is not None):
        return None
    return "min" if expect.min is not None else "max"


def judged(check: Check, measurement: Measurement | None, direction: Side) -> Judged | None:
    """The deciding number of ``measurement`` under ``check``'s metric and aggregation; None when not measured."""
    if measurement is None or not measurement.valid or check.metric not in measurement.metrics:
        return None
    metric = measurement.metrics[check.metric]
    if check.expect.on == "aggregate":
        if metric.aggregate is None:
            return None
        return Judged(float(metric.aggregate), _se(metric.se), "aggregate")
    values = {int(b): float(v) for b, v in metric.per_layer.items()}
    if not values:
        return None
    needed = max(1, math.ceil(check.expect.fraction * len(values) - 1e-9))
    # NaN sorts as the worst value either way: it never passes a bound.
    worst = -math.inf if direction == "min" else math.inf
    ranked = sorted(values, key=lambda b: values[b] if math.isfinite(values[b]) else worst, reverse=direction == "min")
    block = ranked[needed - 1]
    return Judged(values[block], _se(metric.per_layer_se.get(block)), f"block {block}")


def _se(se: float | None) -> float:
    return float(se) if se is not None and math.isfinite(se) else math.nan


@dataclass(frozen=True)
class Fit:
    """A fitted bound (None with ``why`` when the trained and twin values do not separate)."""

    direction: Side
    bound: float | None
    why: str = ""
    trained_edge: float = math.nan  # the weakest trained value, moved z SEs towards the twins
    twin_edge: float = math.nan  # the strongest twin value, moved z SEs towards the trained ones (NaN: no finite twin)

    def admits(self, value: float) -> bool:
        """Whether ``value`` passes the fitted bound (NaN never does)."""
        if self.bound is None or not math.isfinite(value):
            return False
        return value >= self.bound if self.direction == "min" else value <= self.bound


def margin_in_se(fit: Fit, observed: Judged) -> float:
    """How far ``observed`` sits from the bound on its own side, in its standard errors (negative: the wrong side)."""
    if fit.bound is None or not math.isfinite(observed.value):
        return math.nan
    gap = observed.value - fit.bound if fit.direction == "min" else fit.bound - observed.value
    return gap / observed.se if math.isfinite(observed.se) and observed.se > 0 else math.copysign(math.inf, gap)


def fit_bound(direction: Side, trained: Sequence[Judged], twins: Sequence[Judged], z: float = 3.0, *, prior: float | None = None) -> Fit:
    """The bound between ``trained`` and ``twins`` with ``z`` standard errors of room on both sides.

    ``prior`` (the template's bound, usually a paper's claim such as "in the first half of the depth") is
    kept when no twin has a finite value and the trained models sit inside it with room: the twins then
    fail by having nothing to measure, and the data give no reason to move it.
    """
    sign = 1.0 if direction == "min" else -1.0

    def moved(j: Judged, towards: float) -> float:
        return j.value + towards * z * (j.se if math.isfinite(j.se) else 0.0)

    if not trained or any(not math.isfinite(t.value) for t in trained):
        return Fit(direction, None, "a trained model has no finite value")
    trained_edge = min((moved(t, -sign) for t in trained), key=lambda v: sign * v)
    finite_twins = [w for w in twins if math.isfinite(w.value)]
    if not finite_twins:
        # Every twin failed by having nothing to measure: the bound only has to keep the trained models in.
        if prior is not None and sign * (trained_edge - prior) >= 0:
            return Fit(direction, prior, trained_edge=trained_edge)
        return Fit(direction, _round_outward(trained_edge, direction), trained_edge=trained_edge)
    twin_edge = max((moved(w, sign) for w in finite_twins), key=lambda v: sign * v)
    if sign * (trained_edge - twin_edge) <= 0:
        listed = ", ".join(t.text() for t in trained)
        twin_listed = ", ".join(w.text() for w in finite_twins)
        return Fit(direction, None, f"trained {listed} and twin {twin_listed} are not {z:g} SEs apart on the {direction} side",
                   trained_edge, twin_edge)
    low, high = sorted((trained_edge, twin_edge))
    centre = math.sqrt(low * high) if low > 0 else (low + high) / 2
    return Fit(direction, _round_inside(centre, low, high), trained_edge=trained_edge, twin_edge=twin_edge)


def _round_inside(value: float, low: float, high: float) -> float:
    """``value`` to the fewest significant digits (2 to 6) that keep it strictly inside (low, high)."""
    for digits in range(2, 7):
        rounded = float(f"{value:.{digits}g}")
        if low < rounded < high:
            return rounded
    return value


def _round_outward(edge: float, direction: Side) -> float:
    """``edge`` to 2-6 significant digits, rounded away from the trained side (a looser bound, never a tighter one)."""
    for digits in range(2, 7):
        rounded = float(f"{edge:.{digits}g}")
        if (direction == "min" and rounded <= edge) or (direction == "max" and rounded >= edge):
            return rounded
    return edge
