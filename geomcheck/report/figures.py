"""Plotly figures for the HTML report: one builder per property, plus a metric-vs-bounds plot for every check.

Builders read a property's Measurement (its metrics and plot details) and, where the details do not
carry what a plot needs (token identities for hovers, every block rather than the measured ones),
the captured Activations. Every figure keeps at most MAX_POINTS points, stored as float32, and any
text a model or tokenizer supplied reaches plotly HTML-escaped (plotly reads tags in hover text).
"""

from __future__ import annotations

import hashlib
import html
import importlib
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from geomcheck.capture.activations import Activations
from geomcheck.capture.sites import Point
from geomcheck.properties.base import Measurement
from geomcheck.properties.linear import balanced_accuracy
from geomcheck.spec.layers import format_blocks
from geomcheck.spec.schema import Check, Expectation

MAX_POINTS = 10_000
MAX_UMAP_POINTS = 2_000
_UMAP_MEMO: dict[tuple, np.ndarray] = {}  # the last embedding, by the points' content and seed
MAX_TOKEN_CHARS = 40
PASS_COLOUR, FAIL_COLOUR = "#2e7d32", "#c62828"
ATTN_COLOUR, MLP_COLOUR = "#1f77b4", "#ff7f0e"
TEMPLATE = "plotly_white"
# Each figure carries an empty template; the page applies TEMPLATE once to all of them
# (geomcheck.report.html). Assigning the named template validated and copied it per figure: ~10 ms
# each, half a second per report.
NO_TEMPLATE: dict = {}
# Full tick labels on log axes: plotly's default writes 20 and 50 as a small "2" and "5".
LOG_AXIS = {"type": "log", "tickformat": "~g"}
PASS_BAND = "pass band"  # the name of every shaded band, so a reader (or a test) can tell it from other shapes


@dataclass(frozen=True)
class Figure:
    """One plot in the report: a plotly figure, a title and a sentence saying how to read it."""

    key: str
    title: str
    caption: str
    figure: go.Figure
    metric: str | None = None  # the metric it plots by block, when a check's metric figure may already show it

    @property
    def height(self) -> int:
        """The page reserves exactly the figure's own height, so a caption never sits under a plot."""
        return int(self.figure.layout.height or 450)


@dataclass(frozen=True)
class TokenText:
    """Display text of every captured token, HTML-escaped once so plotly shows tags as text."""

    ids: np.ndarray
    strings: Mapping[int, str]

    def at(self, sequences: np.ndarray, positions: np.ndarray) -> list[str]:
        return [self.strings.get(int(self.ids[s, p]), "?") for s, p in zip(sequences, positions)]


def display_token(tokenizer: object | None, token: int) -> str:
    """A token as people read it: its decoded text quoted (whitespace visible), cut to MAX_TOKEN_CHARS; raw, not escaped."""
    text = f"#{token}"
    if tokenizer is not None:
        try:
            text = repr(tokenizer.decode([token]))
        except (TypeError, ValueError, KeyError, IndexError, OverflowError):
            pass
    return text if len(text) <= MAX_TOKEN_CHARS else text[: MAX_TOKEN_CHARS - 1] + "…"


def token_text(ids: np.ndarray, tokenizer: object | None) -> TokenText:
    """Decode each distinct id once and escape it for plotly's tag-reading hover labels."""
    return TokenText(ids, {token: html.escape(display_token(tokenizer, token)) for token in np.unique(ids).tolist()})


@dataclass(frozen=True)
class FigureInput:
    """What a builder may read: the measurement, and the capture it came from when the session kept it."""

    measurement: Measurement
    activations: Activations | None
    tokens: TokenText | None
    seed: int = 0
    umap: bool = False  # the UMAP view of the separation: about 10 s of numba compilation per process, so on request


# ---------------------------------------------------------------- helpers


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    if n <= limit:
        return np.arange(n)
    return np.sort(rng.choice(n, size=limit, replace=False))


def _figure(title: str, x_title: str, y_title: str, *, log_y: bool = False, height: int = 420) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template=NO_TEMPLATE,
        title={"text": title, "x": 0.01},
        height=height,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        legend={"orientation": "h", "y": -0.18},
        hovermode="closest",
    )
    fig.update_xaxes(title_text=x_title, **({"dtick": 1} if x_title == "block" else {}))
    fig.update_yaxes(title_text=y_title, **(LOG_AXIS if log_y else {"type": "linear"}))
    return fig


def _pca(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(k, *x.shape), random_state=seed)
    return pca.fit_transform(x), pca.explained_variance_ratio_


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _hover(tokens: TokenText | None, sequences: np.ndarray, positions: np.ndarray, prefix: Sequence[str] | None = None) -> list[str]:
    words = tokens.at(sequences, positions) if tokens is not None else [""] * len(sequences)
    lead = prefix if prefix is not None else [""] * len(sequences)
    return [f"{p}seq {s} · pos {t}<br>{w}" for p, s, t, w in zip(lead, sequences.tolist(), positions.tolist(), words)]


def _block_norms(acts: Activations, point: Point) -> tuple[list[int], dict[int, np.ndarray]]:
    stats = acts.block_stats(point)
    blocks = sorted(stats)
    return blocks, {b: stats[b].norms for b in blocks}


# ---------------------------------------------------------------- every check: metric against its bounds


def shade_pass_band(fig: go.Figure, expect: Expectation, values: Sequence[float], **where: int) -> list[float]:
    """Shade where a value passes and draw each bound; returns a y range that shows data and bounds.

    Only ever behind values the check judges: ``where`` (``row=, col=``) puts it on one subplot.
    """
    if where:  # plotly silently skips shapes on a subplot that has no trace yet
        where = {**where, "exclude_empty_subplots": False}
    bounds = [b for b in (expect.lower, expect.upper) if b is not None]
    low, high = min([*values, *bounds]), max([*values, *bounds])
    pad = 0.08 * (high - low) if high > low else max(abs(high) * 0.1, 1.0)
    band = (expect.lower if expect.lower is not None else low - pad, expect.upper if expect.upper is not None else high + pad)
    fig.add_hrect(y0=band[0], y1=band[1], fillcolor=PASS_COLOUR, opacity=0.10, line_width=0, layer="below", name=PASS_BAND, **where)
    for bound in bounds:
        fig.add_hline(y=bound, line={"color": PASS_COLOUR, "dash": "dash", "width": 1}, **where)
    return [band[0] - pad, band[1] + pad] if len(bounds) == 2 else [low - pad, high + pad]


def judged(failing: Sequence[bool]) -> dict[str, object]:
    """Trace metadata saying the check judges these values, and which of them fail it."""
    return {"judged": True, "failing": [bool(f) for f in failing]}


NOT_JUDGED = {"judged": False}


def metric_figure(check: Check, measurement: Measurement, failing_layers: Sequence[int] = ()) -> Figure | None:
    """The checked metric with its pass band shaded behind exactly the values the check judges.

    ``on: per_layer``: the band sits behind the per-block values, failing blocks in red. ``on: aggregate``:
    the aggregate gets its own panel with the band; per-block values, when the metric has them, are drawn
    beside it without a band, because no block is gated and a band behind them would read as a verdict.
    """
    metric = measurement.metrics.get(check.metric)
    if metric is None:
        return None
    expect = check.expect
    per_layer = {int(b): float(v) for b, v in sorted(metric.per_layer.items())}
    finite = {b: v for b, v in per_layer.items() if np.isfinite(v)}
    aggregate = metric.aggregate if metric.aggregate is not None and np.isfinite(metric.aggregate) else None
    if expect.on == "per_layer":
        if not finite:
            return None
        title = f"{check.id}: {check.metric} by block"
        fig = _figure(title, "block", check.metric, height=380)
        y_range = shade_pass_band(fig, expect, list(finite.values()))
        blocks = list(finite)
        failing = set(failing_layers)
        fig.add_trace(go.Scatter(x=blocks, y=_f32(list(finite.values())), mode="lines+markers", name=f"{check.metric} per block (judged)",
                                 marker={"color": [FAIL_COLOUR if b in failing else PASS_COLOUR for b in blocks], "size": 8},
                                 line={"color": "#90a4ae"}, meta=judged([b in failing for b in blocks])))
        fig.update_xaxes(dtick=max(1, len(blocks) // 15))
        fig.update_yaxes(range=y_range)
        need = f", at least {expect.fraction:.0%} of blocks" if expect.mostly is not None else ", every block"
        caption = f"Shaded: the pass band {expect.condition()}{need}. Red markers are blocks outside it."
        return Figure(f"metric-{check.id}", title, caption, fig)
    if aggregate is None and not finite:
        return None
    title = f"{check.id}: {check.metric} (judged on its aggregate)"
    outside = aggregate is not None and not expect.admits(aggregate)
    colour = FAIL_COLOUR if outside else PASS_COLOUR
    if not finite:
        fig = _figure(title, "", check.metric, height=380)
        y_range = shade_pass_band(fig, expect, [aggregate])
        fig.add_trace(go.Scatter(x=["aggregate"], y=_f32([aggregate]), mode="markers", name=f"aggregate {aggregate:.4g} (judged)",
                                 marker={"color": colour, "size": 14, "symbol": "diamond"}, meta=judged([outside])))
        fig.update_yaxes(range=y_range)
        caption = f"Shaded: the pass band {expect.condition()} of the aggregate the check judges."
        return Figure(f"metric-{check.id}", title, caption, fig)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.76, 0.24], horizontal_spacing=0.1,
                        subplot_titles=["per block: shown, not judged", "aggregate: judged"])
    fig.update_layout(template=NO_TEMPLATE, title={"text": title, "x": 0.01}, height=400, margin={"l": 60, "r": 20, "t": 80, "b": 50},
                      legend={"orientation": "h", "y": -0.2}, hovermode="closest")
    blocks = list(finite)
    fig.add_trace(go.Scatter(x=blocks, y=_f32(list(finite.values())), mode="lines+markers", name=f"{check.metric} per block (not judged)",
                             marker={"color": "#78909c", "size": 7}, line={"color": "#b0bec5"}, meta=NOT_JUDGED), row=1, col=1)
    fig.update_xaxes(title_text="block", dtick=max(1, len(blocks) // 15), row=1, col=1)
    fig.update_yaxes(title_text=check.metric, row=1, col=1)
    caption = "Left: the metric in each block alone, for reading only; the check does not judge blocks. "
    if aggregate is not None:
        y_range = shade_pass_band(fig, expect, [aggregate], row=1, col=2)
        fig.add_trace(go.Scatter(x=["aggregate"], y=_f32([aggregate]), mode="markers", name=f"aggregate {aggregate:.4g} (judged)",
                                 marker={"color": colour, "size": 14, "symbol": "diamond"}, meta=judged([outside])), row=1, col=2)
        fig.update_yaxes(range=y_range, row=1, col=2)
        caption += f"Right: the aggregate the check judges, against its pass band {expect.condition()} (shaded)."
    else:
        caption += "The aggregate is not defined, so there is nothing to judge against the band."
    return Figure(f"metric-{check.id}", title, caption, fig)


@dataclass(frozen=True)
class Verdict:
    """One check as the overview draws it: its metric's values, the blocks that fail, and its status."""

    check: Check
    measurement: Measurement | None
    failing_layers: Sequence[int]
    status: str


OVERVIEW_COLUMNS = 4


def overview_figure(verdicts: Sequence[Verdict]) -> Figure | None:
    """Every check in one compact grid: the judged values against their pass band, readable with every section closed."""
    panels = []
    for verdict in verdicts:
        m = verdict.measurement
        metric = m.metrics.get(verdict.check.metric) if m is not None and m.valid else None
        if metric is None:
            continue
        expect = verdict.check.expect
        if expect.on == "per_layer":
            points = {int(b): float(v) for b, v in sorted(metric.per_layer.items()) if np.isfinite(v)}
        else:
            points = {"aggregate": float(metric.aggregate)} if metric.aggregate is not None and np.isfinite(metric.aggregate) else {}
        if points:
            panels.append((verdict, points))
    if not panels:
        return None
    rows = -(-len(panels) // OVERVIEW_COLUMNS)
    fig = make_subplots(rows=rows, cols=OVERVIEW_COLUMNS, horizontal_spacing=0.06, vertical_spacing=0.5 / rows,
                        subplot_titles=[f"{v.check.id}: {v.status}" for v, _ in panels])
    for index, (verdict, points) in enumerate(panels):
        where = {"row": index // OVERVIEW_COLUMNS + 1, "col": index % OVERVIEW_COLUMNS + 1}
        expect = verdict.check.expect
        y_range = shade_pass_band(fig, expect, list(points.values()), **where)
        if expect.on == "per_layer":
            failing = [b in set(verdict.failing_layers) for b in points]
        else:
            failing = [not expect.admits(v) for v in points.values()]
        fig.add_trace(go.Scatter(x=list(points), y=_f32(list(points.values())), mode="lines+markers" if len(points) > 1 else "markers",
                                 marker={"color": [FAIL_COLOUR if f else PASS_COLOUR for f in failing], "size": 6 if len(points) > 1 else 11},
                                 line={"color": "#b0bec5", "width": 1}, showlegend=False, meta=judged(failing),
                                 hovertemplate=f"{html.escape(verdict.check.id)}<br>%{{x}}: %{{y:.4g}}<extra></extra>"), **where)
        fig.update_yaxes(range=y_range, **where)
    fig.update_layout(template=NO_TEMPLATE, height=60 + 190 * rows, margin={"l": 50, "r": 20, "t": 40, "b": 30}, hovermode="closest")
    fig.update_annotations(font_size=12)
    return Figure("overview", "Every check at a glance",
                  "One panel per check: the values it judges (per block, or its aggregate) against its pass band (shaded); "
                  "red markers fail. Open a property below for the plots behind each number.", fig)


# ---------------------------------------------------------------- attn_mlp_separation


def params_of(m: Measurement):
    """The measurement's parameters as its property's typed model: defaults come from the declaration, never restated here."""
    from geomcheck import properties

    return properties.get(m.property).params.model_validate(m.params)


def _probe_space(data: FigureInput):
    """The points the check's probe saw, in the space it saw them, with the held-out decision of each.

    The measurement keeps them (``probe_scores``, ``probe_decision``): the figure shows the probe that
    was judged, not a second fit. Returns (z, labels, blocks, sequences, decision), or None when the
    measurement did not run the pooled probe.
    """
    details = data.measurement.details
    if "probe_decision" not in details:
        return None
    return (np.asarray(details["probe_scores"], dtype=np.float64), np.asarray(details["label"]), np.asarray(details["block"]),
            np.asarray(details["sequence"]), np.asarray(details["probe_decision"], dtype=np.float64))


def _site_scatter(fig: go.Figure, z: np.ndarray, labels: np.ndarray, hover: list[str], **position) -> None:
    for label, name, colour in ((0, "attn_out", ATTN_COLOUR), (1, "mlp_out", MLP_COLOUR)):
        rows = np.flatnonzero(labels == label)
        fig.add_trace(go.Scattergl(x=_f32(z[rows, 0]), y=_f32(z[rows, 1]), mode="markers", name=name,
                                   marker={"color": colour, "size": 4, "opacity": 0.55},
                                   hovertext=[hover[i] for i in rows], hoverinfo="text", **position))


def separation_figures(data: FigureInput) -> list[Figure]:
    """What the check measured: the probe's held-out decision values in the top-k PCA space it was trained in.

    A 2-D PCA of the raw vectors is deliberately not shown: the probe sees k (default 8) components, and
    at random init two components can look more separated than eight are (the check then rightly fails).
    """
    space = _probe_space(data)
    if space is None:
        return []
    z, labels, blocks, sequences, decision = space
    k = z.shape[1]
    rng = np.random.default_rng(data.seed)
    rows = _subsample(len(z), MAX_POINTS, rng)
    hover = [f"{'attn' if labels[i] == 0 else 'mlp'} · block {blocks[i]} · seq {sequences[i]}<br>decision {decision[i]:+.2f}" for i in rows]
    # The probe's direction in the k-D space, and the top component orthogonal to it: a 2-D view of the 8-D probe space.
    direction = np.linalg.lstsq(np.column_stack([z, np.ones(len(z))]), decision, rcond=None)[0][:k]
    direction = direction / (np.linalg.norm(direction) or 1.0)
    rest = z - np.outer(z @ direction, direction)
    _, _, vt = np.linalg.svd(rest - rest.mean(axis=0), full_matrices=False)
    view = np.column_stack([decision, rest @ vt[0]])
    accuracy = balanced_accuracy(labels, (decision > 0).astype(labels.dtype))
    checked = data.measurement.metrics.get("probe_pca_accuracy")
    checked_text = f"; the check's value (mean over folds): {checked.aggregate:.3f}" if checked is not None and checked.aggregate is not None else ""
    unit = "unit-normalised " if params_of(data.measurement).unit_normalise else ""
    fig = _figure(f"attn_out vs mlp_out in the probe's {k}-D PCA space", "held-out probe decision value (> 0: mlp_out)",
                  f"top remaining component of the {k}-D space", height=520)
    _site_scatter(fig, view[rows], labels[rows], hover)
    fig.add_vline(x=0, line={"color": "#424242", "dash": "dash", "width": 1})
    figures = [Figure("separation-probe", f"What the check measured: the probe in the top {k} PCs", (
        f"{len(z):,} {unit}pooled attention (blue) and MLP (orange) outputs from {format_blocks(data.measurement.layers)}, "
        f"projected onto the top {k} principal components the probe is trained on. x: each point's held-out decision value "
        f"(the dashed line is the probe's boundary); y: the largest remaining direction of the same {k}-D space. "
        f"Held-out balanced accuracy of these decisions: {accuracy:.3f}{checked_text}. A 2-D PCA is not shown: "
        f"the check sees {k} components, not 2."), fig)]
    fig = _figure("held-out probe decision values by site", "decision value (> 0: mlp_out)", "points", height=320)
    for label, name, colour in ((0, "attn_out", ATTN_COLOUR), (1, "mlp_out", MLP_COLOUR)):
        fig.add_trace(go.Histogram(x=_f32(decision[labels == label]), name=name, marker_color=colour, opacity=0.6, nbinsx=60))
    fig.update_layout(barmode="overlay")
    fig.add_vline(x=0, line={"color": "#424242", "dash": "dash", "width": 1})
    figures.append(Figure("separation-decisions", "Probe decisions by site",
                          "Two humps on either side of zero: the sites separate in the probe's space; one shared hump: they do not.", fig))
    umap_figure = _separation_umap(z, labels, hover, rows, rng, data.seed) if data.umap else None
    if umap_figure is not None:
        figures.append(umap_figure)
    per_layer = data.measurement.metrics.get("fisher_ratio")
    if per_layer is not None and per_layer.per_layer:
        fig = _figure("Fisher ratio of each block alone (not the judged value)", "block", f"Fisher ratio (each block's own top {k} PCs)",
                      log_y=True, height=360)
        ordered = sorted(per_layer.per_layer.items())
        fig.add_trace(go.Scatter(x=[b for b, _ in ordered], y=_f32([max(v, 1e-6) for _, v in ordered]), mode="lines+markers",
                                 name="per block: shown, not judged"))
        pooled = per_layer.aggregate
        if pooled is not None and np.isfinite(pooled):
            fig.add_hline(y=max(pooled, 1e-6), line={"color": "#424242", "dash": "dot", "width": 2},
                          annotation_text=f"judged: pooled over the blocks, {pooled:.3g}", annotation_position="top left")
        figures.append(Figure("separation-fisher", "Fisher ratio by block (a different quantity from the judged one)", (
            "How far apart the two clouds sit in each block alone, in that block's own principal components. A different "
            "quantity from the one a check judges: the judged Fisher ratio pools every block's points into one PCA (dotted "
            "line), where clouds that are apart within each block can overlap across blocks."), fig, metric="fisher_ratio"))
    return figures


def _separation_umap(z: np.ndarray, labels: np.ndarray, hover: list[str], shown: np.ndarray, rng: np.random.Generator,
                     seed: int) -> Figure | None:
    # umap's nearest-neighbour kernels are numba functions marked cache=True: with a writable cache
    # directory they compile once per machine (about 15 s on 2 cores) instead of once per run.
    from geomcheck.models.gguf_cache import cache_root

    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_root() / "numba"))
    try:
        import umap
    except ImportError:
        return None
    picks = _subsample(len(shown), MAX_UMAP_POINTS, rng)
    rows = shown[picks]
    if len(rows) < 20:
        return None
    from sklearn.metrics.pairwise import euclidean_distances

    points = np.ascontiguousarray(z[rows])
    key = (hashlib.blake2b(points.tobytes(), digest_size=16).hexdigest(), points.shape, seed)
    embedded = _UMAP_MEMO.get(key)
    if embedded is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Distances computed up front: umap's own small-data path calls its metric once per pair in Python.
            distances = euclidean_distances(points)
            reducer = umap.UMAP(n_neighbors=min(15, len(rows) - 1), min_dist=0.1, metric="precomputed", random_state=seed, n_epochs=200)
            embedded = reducer.fit_transform(distances)
        # Two reports drawing one shared measurement (decoder.yaml's separation and llama.yaml's Fisher
        # ratio read the same probe) embed the same points: once per process is enough.
        _UMAP_MEMO.clear()
        _UMAP_MEMO[key] = embedded
    fig = _figure(f"attn_out vs mlp_out, UMAP of the top {z.shape[1]} PCs", "UMAP 1", "UMAP 2", height=520)
    _site_scatter(fig, embedded, labels[rows], [hover[i] for i in picks])
    return Figure("separation-umap", "UMAP of the probe's space", (
        f"{len(rows):,} of the same points in the same {z.shape[1]}-D PCA space, UMAP (Euclidean, 15 neighbours, seed {seed}). "
        "Distances between clusters in UMAP are not meaningful; separation is."), fig)


# ---------------------------------------------------------------- first_position_norm


def first_position_figures(data: FigureInput) -> list[Figure]:
    m, acts = data.measurement, data.activations
    point = Point(params_of(m).point)
    figures = []
    details = m.details
    if "median_norm_by_position" in details:
        blocks = [int(b) for b in details["blocks"]]
        table = np.asarray(details["median_norm_by_position"], dtype=np.float64)
        figures.append(_norm_heatmap(blocks, table, data.seed, "first-position-by-position", f"median {point.value} norm by position",
                                     "Norm by position", "Median over sequences of each position's norm (colour, log scale), one row per "
                                     "measured block; position 0 standing far above the rest is the signature."))
    if acts is not None:
        all_blocks, norms = _block_norms(acts, point)
        if all_blocks and acts.length > 1:
            first = [float(np.median(norms[b][:, 0])) for b in all_blocks]
            rest = [float(np.median(norms[b][:, 1:])) for b in all_blocks]
            fig = _figure(f"{point.value} norm by block: position 0 vs the rest", "block", "median norm (log)", log_y=True)
            fig.add_trace(go.Scatter(x=all_blocks, y=_f32(first), mode="lines+markers", name="position 0", line={"color": FAIL_COLOUR}))
            fig.add_trace(go.Scatter(x=all_blocks, y=_f32(rest), mode="lines+markers", name="positions ≥ 1", line={"color": "#455a64"}))
            figures.append(Figure("first-position-by-block", "Position 0 vs the rest, by block",
                                  "Median norms. " + _mark_band(fig, m), fig))
    ratio = m.metrics.get("ratio")
    if ratio is not None and ratio.per_layer:
        ordered = sorted(ratio.per_layer.items())
        fig = _figure("position-0 norm ratio by block", "block", "ratio (log)", log_y=True, height=360)
        fig.add_trace(go.Scatter(x=[b for b, _ in ordered], y=_f32([max(v, 1e-6) for _, v in ordered]), mode="lines+markers", name="ratio"))
        threshold = float(params_of(m).threshold)
        fig.add_trace(go.Scatter(x=[ordered[0][0], ordered[-1][0]], y=[threshold, threshold], mode="lines", name=f"threshold {threshold:g}",
                                 line={"dash": "dash", "color": FAIL_COLOUR}))
        figures.append(Figure("first-position-ratio", "Ratio by block",
                              "Norm at position 0 over the median of later positions, mean over sequences. " + _mark_band(fig, m), fig,
                              metric="ratio"))
    return figures


def _mark_band(fig: go.Figure, m: Measurement) -> str:
    """Dotted lines at the onset and last blocks; returns the caption sentence, which says so when no block qualified."""
    threshold = float(params_of(m).threshold)
    marked = []
    for name, label in (("onset_layer", "onset"), ("last_layer", "last")):
        metric = m.metrics.get(name)
        if metric is not None and metric.aggregate is not None and np.isfinite(metric.aggregate):
            fig.add_vline(x=metric.aggregate, line={"dash": "dot", "color": "#6a1b9a"}, annotation_text=f"{label} {metric.aggregate:g}")
            marked.append(label)
    if marked:
        return f"The dotted lines mark the first and last block whose ratio exceeds the threshold {threshold:g}."
    return f"No block's ratio exceeded the threshold {threshold:g}, so onset and last are not defined (shown as nan in checks)."


def _norm_heatmap(blocks: Sequence[int], table: np.ndarray, seed: int, key: str, title: str, short: str, caption: str) -> Figure:
    """Blocks by position, coloured by log10 of a norm: every block readable at once, where lines would overlap."""
    positions = _subsample(table.shape[1], MAX_POINTS // max(len(blocks), 1), np.random.default_rng(seed))
    values = table[:, positions]
    logged = np.log10(np.where(values > 0, values, np.nan))
    finite = logged[np.isfinite(logged)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ticks = np.arange(np.floor(low), np.ceil(high) + 1)
    fig = _figure(title, "position", "block", height=max(300, min(640, 60 + 16 * len(blocks))))
    fig.add_trace(go.Heatmap(x=positions, y=list(blocks), z=_f32(logged), colorscale="Viridis", zmin=low, zmax=high if high > low else low + 1,
                             colorbar={"title": {"text": "norm"}, "tickvals": ticks.tolist(), "ticktext": [f"{10 ** t:g}" for t in ticks]},
                             customdata=_f32(values), hovertemplate="block %{y} · position %{x}<br>norm %{customdata:.4g}<extra></extra>"))
    fig.update_yaxes(dtick=max(1, len(blocks) // 15))
    return Figure(key, short, caption, fig)


# ---------------------------------------------------------------- positional_helix


def helix_figures(data: FigureInput) -> list[Figure]:
    details = data.measurement.details
    if "pcs" not in details:
        return []
    pcs = np.asarray(details["pcs"], dtype=np.float64)
    source = str(details["source"][0]) if "source" in details else "positions"
    rows = _subsample(len(pcs), MAX_POINTS, np.random.default_rng(data.seed))
    position = rows.astype(np.float32)
    marker = {"color": position, "colorscale": "Viridis", "size": 3, "colorbar": {"title": {"text": "position"}}}
    hover = [f"position {int(p)}" for p in rows]
    if pcs.shape[1] >= 3:
        fig = go.Figure(go.Scatter3d(x=_f32(pcs[rows, 0]), y=_f32(pcs[rows, 1]), z=_f32(pcs[rows, 2]), mode="markers+lines",
                                     marker=marker, line={"color": "#b0bec5", "width": 1}, hovertext=hover, hoverinfo="text"))
        fig.update_layout(template=NO_TEMPLATE, title={"text": f"top 3 PCs of {source}", "x": 0.01}, height=560,
                          margin={"l": 0, "r": 0, "t": 50, "b": 0},
                          scene={"xaxis_title": "PC1", "yaxis_title": "PC2", "zaxis_title": "PC3"})
    else:
        fig = _figure(f"top PCs of {source}", "PC1", "PC2" if pcs.shape[1] > 1 else "position", height=560)
        fig.add_trace(go.Scatter(x=_f32(pcs[rows, 0]), y=_f32(pcs[rows, 1] if pcs.shape[1] > 1 else rows), mode="markers+lines",
                                 marker=marker, hovertext=hover, hoverinfo="text"))
    figures = [Figure("helix-3d", "Positions in their top principal components",
                      f"Each point is one row of {source}, coloured by position; a helix winds smoothly.", fig)]
    cycles = np.asarray(details.get("cycles", []), dtype=np.float64)
    k = pcs.shape[1]
    fig = make_subplots(rows=k, cols=1, shared_xaxes=True, vertical_spacing=0.04, subplot_titles=[f"PC{j + 1}" for j in range(k)])
    t = np.arange(len(pcs)) / len(pcs)
    for j in range(k):
        fig.add_trace(go.Scatter(x=rows, y=_f32(pcs[rows, j]), mode="lines", name=f"PC{j + 1}", line={"color": "#455a64"}), row=j + 1, col=1)
        if j < len(cycles):
            fitted = _sinusoid(pcs[:, j], t, float(cycles[j]))
            fig.add_trace(go.Scatter(x=rows, y=_f32(fitted[rows]), mode="lines", name=f"fit PC{j + 1}: {cycles[j]:.2f} periods",
                                     line={"color": FAIL_COLOUR, "dash": "dash"}), row=j + 1, col=1)
    height = 160 * k + 80
    fig.update_layout(template=NO_TEMPLATE, height=height, title={"text": "each top component vs position, with fitted sinusoid", "x": 0.01},
                      margin={"l": 60, "r": 20, "t": 60, "b": 40}, showlegend=True, legend={"orientation": "h", "y": -0.08})
    fig.update_xaxes(title_text="position", row=k, col=1)
    figures.append(Figure("helix-components", "Components vs position",
                          "Grey: the component; red dashed: least-squares a·cos + b·sin + c + d·t at the fitted frequency.", fig))
    return figures


def _sinusoid(y: np.ndarray, t: np.ndarray, cycles: float) -> np.ndarray:
    design = np.column_stack([np.cos(2 * np.pi * cycles * t), np.sin(2 * np.pi * cycles * t), np.ones_like(t), t])
    return design @ np.linalg.lstsq(design, y, rcond=None)[0]


# ---------------------------------------------------------------- sequence_structure


def sequence_figures(data: FigureInput) -> list[Figure]:
    m, acts = data.measurement, data.activations
    skip = int(params_of(m).skip_first)
    figures = []
    middle = int(m.details["middle_block"][0]) if "middle_block" in m.details else (m.layers[len(m.layers) // 2] if m.layers else None)
    stats = acts.site(middle, Point.RESID_POST) if acts is not None and middle is not None else None
    if stats is not None and stats.position_mean is not None and stats.position_mean.shape[0] - skip >= 3:
        means = stats.position_mean[skip:]
        z, ratio = _pca(means, 2, data.seed)
        position = np.arange(skip, skip + len(means))
        rows = _subsample(len(z), MAX_POINTS, np.random.default_rng(data.seed))
        fig = _figure(f"per-position means at blocks.{middle}.resid_post, PCA", f"PC1 ({ratio[0]:.1%})", f"PC2 ({ratio[-1]:.1%})", height=500)
        fig.add_trace(go.Scatter(x=_f32(z[rows, 0]), y=_f32(z[rows, -1]), mode="markers+lines", line={"color": "#cfd8dc", "width": 1},
                                 marker={"color": position[rows], "colorscale": "Viridis", "size": 6, "colorbar": {"title": {"text": "position"}}},
                                 hovertext=[f"position {p}" for p in position[rows]], hoverinfo="text", name="mean"))
        figures.append(Figure("sequence-means", "Per-position means in PCA",
                              f"Mean over {acts.n_sequences} sequences of each position ≥ {skip}, coloured by position; "
                              "an ordered curve means position organises the stream.", fig))
    samples = stats.samples if stats is not None else None
    if samples is not None:
        index = acts.sample_index
        rows = np.flatnonzero(index[:, 1] >= skip)
        rows = rows[_subsample(len(rows), MAX_POINTS, np.random.default_rng(data.seed))]
        if len(rows) >= 3:
            z, ratio = _pca(samples[rows].astype(np.float64), 2, data.seed)
            fig = _figure(f"sampled tokens at blocks.{middle}.resid_post, PCA", f"PC1 ({ratio[0]:.1%})", f"PC2 ({ratio[-1]:.1%})", height=500)
            fig.add_trace(go.Scattergl(x=_f32(z[:, 0]), y=_f32(z[:, -1]), mode="markers", name="token",
                                       hovertext=_hover(data.tokens, index[rows, 0], index[rows, 1]), hoverinfo="text",
                                       marker={"color": index[rows, 1].astype(np.float32), "colorscale": "Viridis", "size": 4,
                                               "opacity": 0.6, "colorbar": {"title": {"text": "position"}}}))
            figures.append(Figure("sequence-samples", "Sampled tokens in PCA",
                                  f"{len(rows):,} sampled tokens at positions ≥ {skip}, coloured by position; hover for the token.", fig))
    share = m.metrics.get("position_variance_share")
    if share is not None and share.per_layer:
        ordered = sorted(share.per_layer.items())
        fig = _figure("variance share explained by position, by block", "block", "share of variance", height=360)
        fig.add_trace(go.Bar(x=[b for b, _ in ordered], y=_f32([v for _, v in ordered]), name="position variance share", marker_color="#5c6bc0"))
        figures.append(Figure("sequence-share", "Variance share by block",
                              "Between-position variance over total, corrected for the noise of a mean over the sequences.", fig,
                              metric="position_variance_share"))
    return figures


# ---------------------------------------------------------------- layer_norm_growth


def norm_growth_figures(data: FigureInput) -> list[Figure]:
    m, acts = data.measurement, data.activations
    skip = int(params_of(m).skip_first)
    fig = _figure("median resid_post norm by block", "block", "median norm (log)", log_y=True)
    if acts is not None:
        blocks, norms = _block_norms(acts, Point.RESID_POST)
        blocks = [b for b in blocks if norms[b].shape[1] > skip]
        if blocks:
            fig.add_trace(go.Scatter(x=blocks, y=_f32([np.median(norms[b][:, skip:]) for b in blocks]), mode="lines+markers", name="every block",
                                     line={"color": "#90a4ae"}))
            final = acts.site(None, Point.FINAL_NORM)
            if final is not None and final.norms.shape[1] > skip:
                fig.add_trace(go.Scatter(x=[blocks[-1] + 1], y=_f32([np.median(final.norms[:, skip:])]), mode="markers", name="after final norm",
                                         marker={"symbol": "diamond", "size": 11, "color": FAIL_COLOUR}))
    if "median_norm" in m.details:
        fig.add_trace(go.Scatter(x=np.asarray(m.details["blocks"]), y=_f32(m.details["median_norm"]), mode="markers", name="measured blocks",
                                 marker={"size": 9, "color": "#1565c0"}))
    if not fig.data:
        return []
    figures = [Figure("norm-growth", "Norm by block", f"Median norm over every sequence and position ≥ {skip}; "
                      "the diamond (drawn one block past the last) is the output of the final norm.", fig)]
    if acts is not None:
        figures += _norm_by_position(acts, data.seed, "norm-by-position", "median resid_post norm by position",
                                     "Median over sequences, for blocks spread through the depth.")
    return figures


def _norm_by_position(acts: Activations, seed: int, key: str, title: str, caption: str) -> list[Figure]:
    """Median resid_post norm at each position for every block, as a heat map (one row per block)."""
    blocks, norms = _block_norms(acts, Point.RESID_POST)
    if not blocks:
        return []
    table = np.stack([np.median(norms[b], axis=0) for b in blocks]).astype(np.float64)
    return [_norm_heatmap(blocks, table, seed, key, title, "Norm by position", caption + " Colour: the median norm, log scale.")]


# ---------------------------------------------------------------- repeated_token_convergence


def repeated_token_figures(data: FigureInput) -> list[Figure]:
    m = data.measurement
    if not {"blocks", "positions", "cosine"} <= set(m.details):
        return detail_figures(data)
    blocks = [int(b) for b in m.details["blocks"]]
    positions, cosine = np.asarray(m.details["positions"]), np.asarray(m.details["cosine"])
    reference = int(params_of(m).reference_position)
    shown = _subsample(len(positions), MAX_POINTS // max(len(blocks), 1), np.random.default_rng(data.seed))
    fig = _figure(f"cosine similarity to position {reference} along the sequence", "position", "block",
                  height=max(300, min(640, 60 + 16 * len(blocks))))
    fig.add_trace(go.Heatmap(x=positions[shown], y=blocks, z=_f32(cosine[:, shown]), colorscale="RdBu", zmid=0.0, zmin=-1.0, zmax=1.0,
                             colorbar={"title": {"text": "cosine"}}, hovertemplate="block %{y} · position %{x}<br>cos %{z:.3f}<extra></extra>"))
    fig.update_yaxes(dtick=max(1, len(blocks) // 15))
    figures = [Figure("repeated-cosine", "Similarity to the reference position",
                      f"Cosine of the mean state (over sequences) at each position of the repeated token with position {reference}, "
                      "one row per block; colour turning red along a row means that block converges.", fig)]
    rho = m.metrics.get("convergence_rho")
    if rho is not None and rho.per_layer:
        ordered = sorted(rho.per_layer.items())
        fig = _figure("convergence rho by block", "block", "Spearman rho", height=360)
        fig.add_trace(go.Bar(x=[b for b, _ in ordered], y=_f32([v for _, v in ordered]), marker_color="#5c6bc0", name="rho"))
        fig.update_yaxes(range=[-1.05, 1.05])
        figures.append(Figure("repeated-rho", "Convergence by block", "Rank correlation of the similarity with position, per block.", fig,
                              metric="convergence_rho"))
    if data.activations is not None:
        figures += _norm_by_position(data.activations, data.seed, "repeated-norms", "median resid_post norm by position (repeated token)",
                                     "How the repeated copies' norms evolve along the sequence.")
    return figures


# ---------------------------------------------------------------- anything else: plot what the details hold


def detail_figures(data: FigureInput) -> list[Figure]:
    """Fallback for a property without its own builder: every per-layer metric, then 1-D and 2-D details."""
    m = data.measurement
    figures = []
    per_layer = {name: metric for name, metric in m.metrics.items() if metric.per_layer}
    if per_layer:
        fig = _figure(f"{m.property}: per-block metrics", "block", "value", height=380)
        for name, metric in per_layer.items():
            ordered = sorted(metric.per_layer.items())
            fig.add_trace(go.Scatter(x=[b for b, _ in ordered], y=_f32([v for _, v in ordered]), mode="lines+markers", name=name))
        figures.append(Figure("detail-metrics", "Per-block metrics", "Every metric the property reports per block.", fig))
    for name, value in m.details.items():
        array = np.asarray(value)
        if array.dtype.kind not in "fiu" or array.size < 2:
            continue
        if array.ndim == 1:
            fig = _figure(name, "index", name, height=340)
            rows = _subsample(len(array), MAX_POINTS, np.random.default_rng(data.seed))
            fig.add_trace(go.Scatter(x=rows, y=_f32(array[rows]), mode="lines+markers", name=name))
            figures.append(Figure(f"detail-{name}", name, f"The property's `{name}` detail.", fig))
        elif array.ndim == 2:
            step = [max(1, int(np.ceil(n / 100))) for n in array.shape]
            fig = _figure(name, "column", "row", height=400)
            fig.add_trace(go.Heatmap(z=_f32(array[:: step[0], :: step[1]]), colorscale="Viridis"))
            figures.append(Figure(f"detail-{name}", name, f"The property's `{name}` detail (every {step[0]}th row, {step[1]}th column).", fig))
    return figures


def property_figures(data: FigureInput) -> list[Figure]:
    """The plots for one valid measurement, by the builder its property declares (``PropertyDef.figures``,
    ``module:function``); a property without one gets its details plotted."""
    if not data.measurement.valid:
        return []
    return builder_for(data.measurement.property)(data)


@cache
def builder_for(name: str) -> Callable[[FigureInput], list[Figure]]:
    from geomcheck import properties

    prop = properties.REGISTRY.get(name)
    if prop is None or prop.figures is None:
        return detail_figures
    module, _, function = prop.figures.partition(":")
    return getattr(importlib.import_module(module), function)
