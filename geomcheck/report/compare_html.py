"""Renders the self-contained side-by-side page of ``geomcheck compare``: A and B per check, deltas, flips.

It reuses the single-model report's machinery: jinja2 autoescape for every string, ``script_json``
for plot data inside <script> elements, one inlined copy of plotly.js, and model-supplied text
HTML-escaped before plotly sees it.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from geomcheck.gate.compare import CheckComparison, Comparison, per_layer
from geomcheck.gate.results import SessionView
from geomcheck.models.loader import LoadedModel
from geomcheck.paths import write_atomically
from geomcheck.report.figures import FAIL_COLOUR, Figure, _f32, _figure, shade_pass_band
from geomcheck.report.html import (
    PLOT_CONFIG,
    FigureBlock,
    _environment,
    _Figures,
    _plain,
    _versions,
    script_json,
)
from geomcheck.spec.expect import format_value

A_COLOUR, B_COLOUR = "#1f77b4", "#ff7f0e"
MAX_DRIFT_LINES = 12


@dataclass(frozen=True)
class ModelColumn:
    label: str
    reference: str
    source: str
    facts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Side:
    status: str
    value: str
    headline: str
    details: tuple[str, ...]


@dataclass(frozen=True)
class DriftCells:
    """One gated value of the paired test, as the page shows it: A, B, B - A, paired SE, effect in SE."""

    where: str
    a: str
    b: str
    change: str
    se: str
    effect: str
    alarm: bool


@dataclass(frozen=True)
class Row:
    anchor: str
    spec: str
    check_id: str
    property: str
    metric: str
    expected: str
    location: str
    a: Side
    b: Side
    delta: str
    block_delta: str
    drift: tuple[DriftCells, ...]
    drift_count: int
    tested: int
    change: str
    figure: FigureBlock | None


def render_compare(session: SessionView, comparison: Comparison) -> str:
    """The full HTML text of one comparison."""
    models = session.models()
    figures = _Figures()
    columns = [_column("A", comparison.ref_a, models.get(comparison.ref_a)), _column("B", comparison.ref_b, models.get(comparison.ref_b))]
    rows = [_row(index, row, comparison, figures) for index, row in enumerate(comparison.rows)]
    code = comparison.exit_code
    context = {
        "title": f"geomcheck compare: {comparison.ref_a} vs {comparison.ref_b}",
        "ref_a": comparison.ref_a,
        "ref_b": comparison.ref_b,
        "specs": list(dict.fromkeys(row.spec.display_path for row in comparison.rows)),
        "columns": columns,
        "facts": _facts(columns),
        "inputs": list(comparison.inputs),
        "rows": rows,
        "counts": {change: comparison.count(change) for change in ("regressed", "fixed", "unchanged", "changed")},
        "moved": sum(bool(row.drift) for row in comparison.rows),
        "verdict": {0: "passed", 1: "failed", 3: "error"}[code],
        "regressed": [row.check.id for row in comparison.regressions],
        "versions": _versions(),
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "template_json": script_json(figures.template or {}),
        "config_json": script_json(PLOT_CONFIG),
        "plotly_js": Markup(get_plotlyjs()),
    }
    return _environment().get_template("compare.html.j2").render(**context)


def write_compare_report(session: SessionView, comparison: Comparison, path: Path) -> Path:
    write_atomically(path, render_compare(session, comparison))
    return path


def _column(label: str, reference: str, loaded: LoadedModel | None) -> ModelColumn:
    if loaded is None:
        return ModelColumn(label, reference, "not loaded", ())
    facts = [(key, _plain(value)) for key, value in loaded.config_summary().items()]
    facts.append(("load time", f"{loaded.load_seconds:.1f} s"))
    facts += [("note", note) for note in loaded.notes]
    return ModelColumn(label, reference, loaded.source, tuple(facts))


def _facts(columns: list[ModelColumn]) -> list[tuple[str, str, str]]:
    """(key, A's value, B's value) rows, keys in first-seen order; a key only one side has shows blank on the other."""
    first, second = (dict(column.facts) for column in columns)
    notes = [(f"note ({column.label})", note) for column in columns for key, note in column.facts if key == "note"]
    keys = [key for key in dict.fromkeys([*first, *second]) if key != "note"]
    return [(key, first.get(key, ""), second.get(key, "")) for key in keys] + [
        (key, note if key.endswith("(A)") else "", note if key.endswith("(B)") else "") for key, note in notes]


def _side(result, value: float | None) -> Side:
    outcome = result.outcome
    shown = "—" if value is None else format_value(value, result.check.expect)
    return Side(outcome.status, shown, outcome.headline, tuple(outcome.details))


def _row(index: int, row: CheckComparison, comparison: Comparison, figures: _Figures) -> Row:
    a, b = row.values
    largest = row.largest_block_delta
    figure = _overlay(row, comparison)
    return Row(
        anchor=f"check-{index}",
        spec=row.spec.display_path,
        check_id=row.check.id,
        property=row.check.property,
        metric=f"{row.check.metric} ({row.check.expect.on})",
        expected=row.check.expect.condition(),
        location=row.check.location,
        a=_side(row.a, a),
        b=_side(row.b, b),
        delta="—" if row.delta is None else f"{row.delta:+.4g}",
        block_delta="" if largest is None else f"largest at block {largest[0]}: {largest[1]:+.4g}",
        drift=_drift_cells(row),
        drift_count=len(row.drift),
        tested=sum(result.tested for result in (row.noise, row.profile) if result is not None),
        change=row.change,
        figure=figures.add(figure) if figure is not None else None,
    )


def _number(value: float | None, digits: str = ".4g") -> str:
    return "not defined" if value is None or not math.isfinite(value) else format(value, digits)


def _drift_cells(row: CheckComparison) -> tuple[DriftCells, ...]:
    """The blocks that moved past their profile floors, furthest first, then the paired test's rows for the
    check's own gated values (those beyond noise first); at most MAX_DRIFT_LINES in all."""
    moved = [
        DriftCells(r.where, _number(r.baseline), _number(r.now), "not defined" if r.delta is None else f"{r.delta:+.4g}",
                   "—", f"floor {r.floor:.3g}", True)
        for r in row.moved_blocks
    ]
    ordered = sorted(row.noise.rows, key=lambda r: (not r.alarm, -abs(r.effect) if r.effect is not None else 0.0)) if row.noise else []
    gated = [
        DriftCells(r.where, _number(r.baseline), _number(r.now), "not defined" if r.delta is None else f"{r.delta:+.4g}",
                   _number(r.se, ".3g"), _effect(r), r.alarm)
        for r in ordered
    ]
    return tuple([*moved, *gated][:MAX_DRIFT_LINES])


def _effect(row) -> str:
    """``identical`` where B equals A, ``no SE`` where no error is known, else the change in paired SEs."""
    if row.delta is not None and row.delta == 0:
        return "identical"
    return "no SE" if row.effect is None else f"{row.effect:+.1f}"


def _overlay(row: CheckComparison, comparison: Comparison) -> Figure | None:
    """The checked metric by block for A and B on one plot (bars when it has only an aggregate), pass band shaded."""
    expect = row.check.expect
    curves = {"A": per_layer(row.a), "B": per_layer(row.b)}
    values = [v for curve in curves.values() for v in curve.values() if math.isfinite(v)]
    aggregates = dict(zip("AB", row.values))
    values += [v for v in aggregates.values() if v is not None and math.isfinite(v)]
    if not values:
        return None
    names = {"A": f"A: {html.escape(comparison.ref_a)}", "B": f"B: {html.escape(comparison.ref_b)}"}
    colours = {"A": A_COLOUR, "B": B_COLOUR}
    by_block = any(curves.values())
    if by_block and expect.on == "aggregate":
        return _overlay_judged_aggregate(row, curves, aggregates, names, colours)
    title = f"{row.check.id}: {row.check.metric}{' by block' if by_block else ''}, A vs B"
    fig = _figure(title, "block" if by_block else "", row.check.metric, height=380)
    y_range = shade_pass_band(fig, expect, values)
    if by_block:
        for side, curve in curves.items():
            if curve:
                failing = set(getattr(row, side.lower()).outcome.failing_layers) if expect.on == "per_layer" else set()
                markers = [FAIL_COLOUR if layer in failing else colours[side] for layer in curve]
                fig.add_trace(go.Scatter(x=list(curve), y=_f32(list(curve.values())), mode="lines+markers", name=names[side],
                                         line={"color": colours[side]}, marker={"color": markers, "size": 7}))
    else:
        # Both sides always get a place on the axis; a side whose value is NaN says "not defined" instead of vanishing.
        defined = {side: value is not None and math.isfinite(value) for side, value in aggregates.items()}
        fig.add_trace(go.Bar(x=[names[side] for side in aggregates], y=[float(v) if defined[side] else None for side, v in aggregates.items()],
                             marker_color=[colours[side] for side in aggregates], width=[0.4] * len(aggregates), showlegend=False))
        for side in aggregates:
            if not defined[side]:
                fig.add_annotation(x=names[side], y=sum(y_range) / 2, text=f"{side}: not defined (NaN)", showarrow=False,
                                   font={"color": colours[side]})
    fig.update_yaxes(range=y_range)
    caption = (f"Shaded: the pass band {expect.condition()} ({expect.on}). "
               + ("Red markers: blocks outside the band. " if by_block else "")
               + f"Change: {row.change}.")
    return Figure(f"compare-{row.check.id}", title, caption, fig)


def _overlay_judged_aggregate(row: CheckComparison, curves: dict, aggregates: dict, names: dict, colours: dict) -> Figure:
    """A check judged on its aggregate: blocks on the left (shown, not judged, no band), the two aggregates on the right
    against the band, as the single-model report draws it; per-block points over a band would read as the verdict."""
    from plotly.subplots import make_subplots

    from geomcheck.report.figures import NOT_JUDGED, judged

    expect = row.check.expect
    title = f"{row.check.id}: {row.check.metric}, A vs B (judged on the aggregate)"
    fig = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], horizontal_spacing=0.1,
                        subplot_titles=["per block: shown, not judged", "aggregate: judged"])
    fig.update_layout(title={"text": title, "x": 0.01}, height=400, margin={"l": 60, "r": 20, "t": 80, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, hovermode="closest")
    for side, curve in curves.items():
        if curve:
            fig.add_trace(go.Scatter(x=list(curve), y=_f32(list(curve.values())), mode="lines+markers", name=f"{names[side]} per block",
                                     line={"color": colours[side]}, marker={"color": colours[side], "size": 6}, meta=NOT_JUDGED),
                          row=1, col=1)
    fig.update_xaxes(title_text="block", row=1, col=1)
    fig.update_yaxes(title_text=row.check.metric, row=1, col=1)
    finite = {side: v for side, v in aggregates.items() if v is not None and math.isfinite(v)}
    y_range = shade_pass_band(fig, expect, list(finite.values()) or [0.0], row=1, col=2)
    for side, value in finite.items():
        outside = not expect.admits(value)
        fig.add_trace(go.Scatter(x=[side], y=_f32([value]), mode="markers", name=f"{names[side]} aggregate {value:.4g} (judged)",
                                 marker={"color": FAIL_COLOUR if outside else colours[side], "size": 14, "symbol": "diamond"},
                                 meta=judged([outside])), row=1, col=2)
    fig.update_yaxes(range=y_range, row=1, col=2)
    caption = ("Left: the metric in each block alone for A and B, for reading only; the check does not judge blocks. "
               f"Right: the aggregates the check judges, against its pass band {expect.condition()} (shaded; red: outside). "
               f"Change: {row.change}.")
    return Figure(f"compare-{row.check.id}", title, caption, fig)


__all__ = ["render_compare", "write_compare_report"]
