"""Renders the self-contained trajectory page: each check's metric against step with its pass band and standard
error, where each check first passes and last fails, and a block x step heat map for per-block metrics.

It reuses the single-model report's machinery (``geomcheck.report.html``): jinja2 autoescape, ``script_json``
for plot data, the strict CSP, one inlined copy of plotly.js; model-supplied names are HTML-escaped before
plotly sees them.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from geomcheck.paths import write_atomically
from geomcheck.report.figures import FAIL_COLOUR, NOT_JUDGED, PASS_COLOUR, Figure, _figure, judged, shade_pass_band
from geomcheck.report.html import PLOT_CONFIG, FigureBlock, _environment, _Figures, _versions, script_json
from geomcheck.spec.schema import Check
from geomcheck.trajectory.discover import Checkpoint
from geomcheck.trajectory.records import CheckPoint, CheckpointRecord, history

LINE_COLOUR = "#1f77b4"
STATUS_MARKS = {"passed": "+", "failed": "×", "skipped": "–", "error": "!", "missing": "?"}


@dataclass(frozen=True)
class CheckpointRow:
    label: str
    step: str
    reference: str
    state: str
    note: str


@dataclass(frozen=True)
class CheckRow:
    anchor: str
    check_id: str
    property: str
    metric: str
    expected: str
    location: str
    first_pass: str
    last_fail: str
    latest: str
    regressed: bool
    strip: tuple[tuple[str, str, str], ...]  # (status, checkpoint label, mark)
    latest_headline: str
    figures: tuple[FigureBlock, ...]


@dataclass(frozen=True)
class SpecSection:
    file: str
    name: str
    rows: tuple[CheckRow, ...]
    inputs: tuple[tuple[str, str, str], ...]  # description, shape, same token ids at every checkpoint


def render_trajectory(trajectories: Sequence, checkpoints: Sequence[Checkpoint]) -> str:
    """The full HTML text for ``trajectories`` (one per spec, geomcheck.trajectory.run.Trajectory)."""
    figures = _Figures()
    sections = [_section(t, figures) for t in trajectories]
    unusable = {u.reference: u for t in trajectories for u in t.unusable}
    cached = {label for t in trajectories for label in t.cached}
    measured = {r.reference for t in trajectories for r in t.records}
    rows = []
    for c in checkpoints:
        if c.reference in unusable:
            rows.append(CheckpointRow(c.label, _step(c.step), c.reference, "unusable", unusable[c.reference].reason))
        elif c.reference in measured:
            seconds = [r.seconds for t in trajectories for r in t.records if r.reference == c.reference]
            note = "read from the cache" if c.label in cached else f"measured in {sum(seconds):.1f} s"
            rows.append(CheckpointRow(c.label, _step(c.step), c.reference, "measured", note))
        else:
            rows.append(CheckpointRow(c.label, _step(c.step), c.reference, "missing", "not measured"))
    regressed = [f"{s.file}::{row.check_id}" for s in sections for row in s.rows if row.regressed]
    verdict = "error" if unusable or not measured else "failed" if regressed else "passed"
    latest = next((r for r in reversed(rows) if r.state == "measured"), None)
    context = {
        "title": f"geomcheck trajectory: {checkpoints[0].label if checkpoints else ''} … {checkpoints[-1].label if checkpoints else ''}",
        "checkpoints": rows,
        "sections": sections,
        "verdict": verdict,
        "regressed": regressed,
        "unusable_count": len(unusable),
        "latest": latest.label if latest is not None else "none",
        "versions": _versions(),
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "template_json": script_json(figures.template or {}),
        "config_json": script_json(PLOT_CONFIG),
        "plotly_js": Markup(get_plotlyjs()),
    }
    return _environment().get_template("trajectory.html.j2").render(**context)


def write_trajectory_report(trajectories: Sequence, checkpoints: Sequence[Checkpoint], path: Path) -> Path:
    write_atomically(path, render_trajectory(trajectories, checkpoints))
    return path


def _step(step: int | None) -> str:
    return "—" if step is None else str(step)


def _section(trajectory, figures: _Figures) -> SpecSection:
    spec, records = trajectory.spec, trajectory.records
    rows = []
    for index, (check, row) in enumerate(zip(spec.checks, history(spec, records))):
        points = [record.checks.get(check.id) for record in records]
        built = [f for f in (_metric_figure(check, records, points), _heat_map(check, records, points)) if f is not None]
        latest = points[-1] if points else None
        rows.append(CheckRow(
            anchor=f"check-{index}-{spec.name}",
            check_id=check.id,
            property=check.property,
            metric=f"{check.metric} ({check.expect.on})",
            expected=check.expect.condition(),
            location=check.location,
            first_pass=row.first_pass or "never",
            last_fail=row.last_fail or "never",
            latest=row.latest or "—",
            regressed=row.regressed,
            strip=tuple((status, record.label, STATUS_MARKS.get(status, "?")) for status, record in zip(row.statuses, records)),
            latest_headline=latest.headline if latest is not None else "",
            figures=tuple(figures.add(f) for f in built),
        ))
    inputs = []
    by_description: dict[str, set[str]] = {}
    shapes: dict[str, str] = {}
    for record in records:
        for item in record.inputs:
            description = str(item.get("description", ""))
            by_description.setdefault(description, set()).add(str(item.get("token_ids_sha256", "")))
            shapes[description] = " × ".join(str(n) for n in item.get("shape", []))
    for description, hashes in by_description.items():
        inputs.append((description, shapes[description], "yes" if len(hashes) == 1 else "no: the tokenizers differ"))
    return SpecSection(spec.display_path, spec.name, tuple(rows), tuple(inputs))


def _x(records: Sequence[CheckpointRecord]) -> tuple[list[float], str]:
    """Steps when every record has one, else the checkpoints' positions."""
    if records and all(r.step is not None for r in records):
        return [float(r.step) for r in records], "step"
    return [float(i) for i in range(len(records))], "checkpoint (order given)"


def _metric_figure(check: Check, records: Sequence[CheckpointRecord], points: Sequence[CheckPoint | None]) -> Figure | None:
    """The check's metric against step: the aggregate with ±1 standard error, or the blocks' min/median/max when judged
    per block; the pass band shaded and failing checkpoints in red."""
    expect = check.expect
    x, x_title = _x(records)
    hover = [html.escape(r.label) for r in records]
    colours = [FAIL_COLOUR if p is not None and p.status == "failed" else PASS_COLOUR if p is not None and p.status == "passed"
               else "#757575" for p in points]
    title = f"{check.id}: {check.metric} against {x_title.split(' ')[0]}"
    fig = _figure(title, x_title, check.metric, height=380)
    values: list[float] = []
    if expect.on == "per_layer":
        series = {"min over blocks": min, "median": statistics.median, "max over blocks": max}
        for name, reduce in series.items():
            ys = [reduce(list(p.per_layer.values())) if p is not None and p.per_layer else None for p in points]
            values += [y for y in ys if y is not None and math.isfinite(y)]
            fig.add_trace(go.Scatter(x=x, y=ys, mode="lines+markers", name=name, text=hover,
                                     line={"dash": "solid" if name == "median" else "dot", "color": LINE_COLOUR},
                                     marker={"color": colours, "size": 8 if name == "median" else 5}, meta=NOT_JUDGED))
        # No band here: the verdict is on the share of blocks inside it, which no single line shows.
        mostly = f" in at least {expect.mostly:.0%} of the blocks" if expect.mostly else " in every block"
        caption = (f"Per-block check: the lowest, median and highest block at each checkpoint. A checkpoint passes when the "
                   f"metric is {expect.condition()}{mostly} (the heat map shows each block). Red markers: checkpoints that fail.")
        return Figure(f"trajectory-{check.id}", title, caption, fig) if values else None
    else:
        ys = [p.value if p is not None else None for p in points]
        errors = [p.se if p is not None and p.se is not None else 0.0 for p in points]
        values += [y for y in ys if y is not None and math.isfinite(y)]
        fig.add_trace(go.Scatter(x=x, y=ys, mode="lines+markers", name=check.metric, text=hover,
                                 error_y={"type": "data", "array": errors, "visible": True, "color": "#9e9e9e"},
                                 line={"color": LINE_COLOUR}, marker={"color": colours, "size": 9},
                                 meta=judged([p is not None and p.status == "failed" for p in points])))
        caption = "Error bars: ±1 jackknife standard error over input sequence groups, where measured. "
    if not values:
        return None
    fig.update_yaxes(range=shade_pass_band(fig, expect, values))
    caption += f"Shaded: the pass band {expect.condition()}. Red markers: checkpoints that fail the check."
    return Figure(f"trajectory-{check.id}", title, caption, fig)


def _heat_map(check: Check, records: Sequence[CheckpointRecord], points: Sequence[CheckPoint | None]) -> Figure | None:
    """Block x step for a metric with per-block values."""
    blocks = sorted({b for p in points if p is not None for b in p.per_layer})
    if len(blocks) < 2:
        return None
    x, x_title = _x(records)
    z = [[(p.per_layer.get(b) if p is not None else None) for p in points] for b in blocks]
    title = f"{check.id}: {check.metric} by block and {x_title.split(' ')[0]}"
    fig = _figure(title, x_title, "block", height=max(260, 60 + 22 * len(blocks)))
    fig.add_trace(go.Heatmap(x=x, y=blocks, z=z, colorscale="Viridis", colorbar={"title": {"text": html.escape(check.metric)}},
                             hovertemplate="block %{y}<br>" + x_title.split(" ")[0] + " %{x}<br>%{z:.4g}<extra></extra>"))
    fig.update_yaxes(dtick=1)
    caption = f"Each cell: the metric in one block at one checkpoint (pass band {check.expect.condition()}"
    caption += ", judged per block)." if check.expect.on == "per_layer" else "; the check judges the aggregate)."
    return Figure(f"trajectory-heat-{check.id}", title, caption, fig)


__all__ = ["render_trajectory", "write_trajectory_report"]
