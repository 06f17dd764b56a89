"""Renders one self-contained HTML page for one (model, spec): run facts, a check table, a section per property.

Every string that came from a model, tokenizer, corpus or spec goes through jinja2's autoescape;
plot data travels as JSON in ``<script type="application/json">`` blocks with ``<``, ``>`` and
``&`` written as ``\\u003c``/``\\u003e``/``\\u0026``, so no token can close the script element.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import jinja2
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from geomcheck import properties
from geomcheck.capture.activations import Activations
from geomcheck.capture.inputs import InputSpec
from geomcheck.gate.results import CaptureRecord, CheckResult, SessionView
from geomcheck.models.loader import LoadedModel
from geomcheck.paths import printable
from geomcheck.report.figures import (
    Figure,
    FigureInput,
    TokenText,
    Verdict,
    display_token,
    metric_figure,
    overview_figure,
    property_figures,
    token_text,
)
from geomcheck.spec.expect import format_value
from geomcheck.spec.layers import format_blocks
from geomcheck.spec.schema import Spec

VERSIONED_PACKAGES = ("geomcheck", "torch", "transformers", "numpy", "plotly", "scikit-learn", "umap-learn")
EXAMPLE_TOKENS = 48
PLOT_CONFIG = {"displaylogo": False, "responsive": True, "typesetMath": False, "showLink": False}
Captures = Mapping[tuple[str, InputSpec], CaptureRecord]
# Metrics whose NaN means "no block qualified" rather than "could not be computed".
UNDEFINED_WHEN_NONE = {
    "onset_layer": "no block exceeded the threshold {threshold}",
    "last_layer": "no block exceeded the threshold {threshold}",
    "onset_depth": "no block exceeded the threshold {threshold}",
    "last_depth": "no block exceeded the threshold {threshold}",
}
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(value: object) -> Markup:
    """JSON safe to place inside a <script> element: nothing in it can end the element or open a comment."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), allow_nan=False)
    for char, escaped in _JSON_ESCAPES.items():
        text = text.replace(char, escaped)
    return Markup(text)


@dataclass(frozen=True)
class CheckRow:
    anchor: str
    status: str
    check_id: str
    property: str
    metric: str
    measured: str
    expected: str
    location: str
    headline: str
    details: tuple[str, ...]
    reason: str | None
    layers: str
    params: tuple[tuple[str, str], ...]
    seconds: float


@dataclass(frozen=True)
class FigureBlock:
    dom_id: str
    data_id: str
    title: str
    caption: str
    height: int
    data: Markup


@dataclass(frozen=True)
class FigureGroup:
    label: str | None
    figures: tuple[FigureBlock, ...]


@dataclass(frozen=True)
class Section:
    anchor: str
    property: str
    summary: str
    status: str
    open: bool
    checks: tuple[CheckRow, ...]
    groups: tuple[FigureGroup, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class InputRow:
    mode: str
    description: str
    sequences: int
    length: int
    bos: bool
    seed: int
    seconds: float | None
    example: tuple[str, ...] | None  # None: text from the checked repository, not shown (shown_tokens)


@cache
def page_template() -> dict:
    """The plotly template every figure on a page is drawn with, as JSON once per process."""
    from plotly.utils import PlotlyJSONEncoder

    from geomcheck.report.figures import TEMPLATE

    return json.loads(json.dumps(pio.templates[TEMPLATE].to_plotly_json(), cls=PlotlyJSONEncoder))


@dataclass
class _Figures:
    """Numbers every figure on the page so DOM ids stay unique; keeps the one shared plotly template."""

    count: int = 0
    blocks: list[FigureBlock] = field(default_factory=list)

    @property
    def template(self) -> dict:
        return page_template()

    def add(self, figure: Figure) -> FigureBlock:
        self.count += 1
        spec = json.loads(pio.to_json(figure.figure, validate=False, engine="json"))
        spec["layout"].pop("template", None)  # the page's one template applies (page_template)
        block = FigureBlock(f"fig-{self.count}", f"fig-data-{self.count}", figure.title, figure.caption, figure.height,
                            script_json({"data": spec["data"], "layout": spec["layout"]}))
        self.blocks.append(block)
        return block


def render_report(session: SessionView, model: str, spec: Spec, results: Sequence[CheckResult], *, umap: bool = False,
                  input_text: bool = False) -> str:
    """The full HTML text of one (model, spec) report."""
    loaded = session.models().get(model)
    captures = session.captures()
    figures = _Figures()
    sections = [_section(session, model, spec, prop, [r for r in results if r.check.property == prop], captures, figures, loaded, umap,
                         input_text)
                for prop in dict.fromkeys(r.check.property for r in results)]
    rows = [row for section in sections for row in section.checks]
    overview = overview_figure([Verdict(r.check, r.measurement, r.outcome.failing_layers, r.outcome.status) for r in results])
    counts = {status: sum(row.status == status for row in rows) for status in ("passed", "failed", "error", "skipped")}
    context = {
        "title": f"geomcheck: {model} · {spec.name}",
        "model": model,
        "model_kind": f"{loaded.ref.kind} {loaded.ref.target}" if loaded is not None else None,
        "source": loaded.source if loaded is not None else "not loaded",
        "load_seconds": loaded.load_seconds if loaded is not None else None,
        "config": [(key, _plain(value)) for key, value in loaded.config_summary().items()] if loaded is not None else [],
        "notes": list(loaded.notes) if loaded is not None else [],
        "baseline": _baseline_line(session, model, spec),
        "spec": spec,
        "inputs": _inputs(session, model, spec, results, captures, loaded, input_text),
        "versions": _versions(),
        "wall_seconds": time.perf_counter() - session.started,
        "generated": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "counts": counts,
        "overall": "failed" if counts["failed"] or counts["error"] else "passed",
        "rows": rows,
        "sections": sections,
        "overview": figures.add(overview) if overview is not None else None,
        "figure_count": figures.count,
        "template_json": script_json(figures.template or {}),
        "config_json": script_json(PLOT_CONFIG),
        "plotly_js": Markup(get_plotlyjs()),
    }
    return _environment().get_template("report.html.j2").render(**context)


def _baseline_line(session: SessionView, model: str, spec: Spec) -> str:
    """Which baseline the checks were compared with, in words (the model key names the file)."""
    if (model, spec.path) not in session.used_baselines:
        return "not compared with a baseline (none read in this run)"
    path = session.used_baselines[(model, spec.path)]
    return str(path) if path is not None else "none: no baseline file for this model and spec (record one with --geom-update)"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _section(session: SessionView, model: str, spec: Spec, prop: str, results: Sequence[CheckResult],
             captures: Captures, figures: _Figures, loaded: LoadedModel | None, umap: bool = False,
             input_text: bool = False) -> Section:
    definition = properties.REGISTRY.get(prop)
    checks = tuple(_row(result) for result in results)
    groups, notes = [], []
    seen: set[str] = set()
    measured: dict[tuple, list[CheckResult]] = {}
    for result in results:
        m = result.measurement
        if m is not None and m.valid:
            key = (session.inputs_for(spec, result.check), m.layers, json.dumps(m.params, sort_keys=True, default=str))
            measured.setdefault(key, []).append(result)
    for (input_spec, _, _), group in measured.items():
        record = captures.get((model, input_spec))
        acts = record.activations if record is not None else None
        tokens = shown_tokens(acts, input_spec, loaded, input_text)
        if acts is None:
            notes.append("the captured activations were not kept, so only plots from the measurement are shown")
        elif tokens is None:
            notes.append(f"tokens of the {input_spec.mode} inputs are not shown (pass --report-input-text or "
                         "--geom-report-input-text to show them)")
        checked = [f for r in group if (f := metric_figure(r.check, r.measurement, r.outcome.failing_layers)) is not None]
        # A property plot of a metric some check here already plots by block would show the same numbers twice.
        own = [f for f in property_figures(FigureInput(group[0].measurement, acts, tokens, input_spec.seed, umap))
               if f.metric is None or f.metric not in {r.check.metric for r in group}]
        built = [f for f in [*own, *checked] if _first_sight(f, seen)]
        label = None if len(measured) == 1 else f"checks {', '.join(r.check.id for r in group)} ({format_blocks(group[0].measurement.layers)})"
        groups.append(FigureGroup(label, tuple(figures.add(f) for f in built)))
    statuses = {row.status for row in checks}
    status = next((s for s in ("error", "failed", "passed", "skipped") if s in statuses), "skipped")
    return Section(
        anchor=f"property-{prop}",
        property=prop,
        summary=definition.summary if definition is not None else "",
        status=status,
        open=status in ("failed", "error"),
        checks=checks,
        groups=tuple(groups),
        notes=tuple(notes),
    )


def shown_tokens(acts: Activations | None, inputs: InputSpec, loaded: LoadedModel | None, input_text: bool) -> TokenText | None:
    """Token text for hovers, or None: only the bundled corpus and vocabulary draws unless the caller asks.

    Text and dataset inputs are files of the repository being checked; a published report must not carry
    them (nor their token ids, which decode back to the text) on a pull request's say-so. Asking is a
    command-line option only, not a spec or ini setting, so the person running the gate decides.
    """
    if acts is None or (inputs.shows_source_text and not input_text):
        return None
    return token_text(acts.tokens, loaded.tokenizer if loaded is not None else None)


def _first_sight(figure: Figure, seen: set[str]) -> bool:
    """False for a figure whose traces equal one already in the section (plots of the whole capture repeat per group)."""
    signature = pio.to_json({"data": list(figure.figure.data)}, validate=False, engine="json")
    if signature in seen:
        return False
    seen.add(signature)
    return True


def _row(result: CheckResult) -> CheckRow:
    check, outcome, m = result.check, result.outcome, result.measurement
    expect = check.expect
    expected = expect.condition() + (" in every block" if expect.on == "per_layer" and expect.mostly is None else "")
    if expect.mostly is not None:
        expected += f" in ≥ {expect.mostly:.0%} of blocks"
    params = m.params if m is not None else check.params.model_dump()
    return CheckRow(
        anchor=f"check-{check.id}",
        status=outcome.status,
        check_id=check.id,
        property=check.property,
        metric=f"{check.metric} ({expect.on})",
        measured=_measured(result),
        expected=expected,
        location=f"{check.file}:{check.line}",
        headline=outcome.headline,
        details=tuple(outcome.details),
        reason=printable(check.reason) if check.reason else check.reason,
        layers=format_blocks(m.layers) if m is not None else str(getattr(check.layers, "value", check.layers)),
        params=tuple((str(k), _plain(v)) for k, v in params.items()),
        seconds=result.seconds,
    )


def _measured(result: CheckResult) -> str:
    outcome, expect = result.outcome, result.check.expect
    if outcome.value is not None:
        if math.isnan(outcome.value) and result.check.metric in UNDEFINED_WHEN_NONE:
            threshold = (result.measurement.params.get("threshold") if result.measurement is not None else None)
            return f"nan: {UNDEFINED_WHEN_NONE[result.check.metric].format(threshold=threshold if threshold is not None else 'the threshold')}"
        return format_value(outcome.value, expect)
    if outcome.per_layer:
        values = list(outcome.per_layer.values())
        low, high = min(values), max(values)
        span = format_value(low, expect) if low == high else f"{format_value(low, expect)} to {format_value(high, expect)}"
        return f"{span} over {len(values)} blocks"
    m = result.measurement
    if m is not None and not m.valid:
        return "not measurable"
    metric = m.metrics.get(result.check.metric) if m is not None else None
    if metric is not None and metric.aggregate is not None:
        return format_value(metric.aggregate, expect)
    return "—"


def _inputs(session: SessionView, model: str, spec: Spec, results: Sequence[CheckResult], captures: Captures,
            loaded: LoadedModel | None, input_text: bool) -> list[InputRow]:
    rows = []
    for input_spec in dict.fromkeys(session.inputs_for(spec, r.check) for r in results):
        record = captures.get((model, input_spec))
        if record is None:
            continue
        batch = record.batch
        example = None
        if input_text or not input_spec.shows_source_text:
            example = tuple(display_token(loaded.tokenizer if loaded is not None else None, int(t)) for t in batch.ids[0, :EXAMPLE_TOKENS])
        rows.append(InputRow(input_spec.mode, batch.description, batch.n_sequences, batch.length, batch.bos, input_spec.seed,
                             record.seconds, example))
    return rows


def _versions() -> list[tuple[str, str]]:
    found = [("python", platform.python_version())]
    for name in VERSIONED_PACKAGES:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found


def _plain(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)

