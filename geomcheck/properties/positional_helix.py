"""Whether learned position embeddings trace a low-dimensional helix: smooth, periodic principal components.

Definition (Ning & Rangaraju, "Visualizing LLM Latent Space Geometry Through Dimensionality
Reduction", arXiv 2511.21594, who find GPT-2's position embeddings form a helix whose first
component traces ~1.5 periods over 1024 positions): take the learned position table, or as a
second source the per-position mean of ``blocks.<b>.resid_post``, both from position ``skip_first``
on (the first-position outlier would otherwise dominate the PCs) and at most ``max_positions``
rows after it, and its top ``components`` principal components c_j(t). For each,
the frequency starts at the FFT peak of the linearly detrended series and is refined by a bounded
scalar search within one bin; the fit is least squares of ``a cos(2 pi f t) + b sin(2 pi f t) + c + d t``.

- ``helix_residual`` (default): 1 - pooled R^2 = sum_j SS_res_j / sum_j SS_tot_j (components weighted
  by their variance). Aggregate from the table (its headline says so, not blocks); per layer from
  the resid_post means.
- ``explained_variance``: fraction of variance in the top ``components`` PCs.
- ``pc0_cycles``: periods of the first component over the rows fitted (GPT-2: ~1.5).
- ``pc0_period``: positions per period of the first component.

Only models with learned absolute positions have a table; rotary models are not applicable.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import Field
from scipy.optimize import minimize_scalar
from scipy.signal import detrend

from geomcheck.capture.activations import Activations
from geomcheck.capture.sites import Point, Site
from geomcheck.properties.base import (
    Measurement,
    MetricSpec,
    Needs,
    Planted,
    PropertyDef,
    PropertyParams,
    Wanted,
    deterministic_pca,
    invalid,
    measurement,
    nonfinite_reason,
)
from geomcheck.properties.synthetic import build_activations, noise

NAME = "positional_helix"
HELIX_RESIDUAL = MetricSpec("helix_residual", "1 - pooled R^2 of sinusoid + trend fits to the top PCs", "fraction of variance",
                            per_layer=True, min_change=(0.03, 0.0), direction="down")
EXPLAINED_VARIANCE = MetricSpec("explained_variance", "variance fraction in the top {components} PCs", "fraction of variance",
                                per_layer=True, min_change=(0.03, 0.0))
PC0_CYCLES = MetricSpec("pc0_cycles", "periods traced by the first PC over the rows fitted", "periods", per_layer=True, min_change=(0.25, 0.0))
PC0_PERIOD = MetricSpec("pc0_period", "positions per period of the first PC", "positions", min_change=(0.0, 0.1))


class Params(PropertyParams):
    """How many components make the helix and how much of the table to read."""

    components: int = Field(3, ge=1, le=16, description="top principal components fitted with sinusoids")
    max_positions: int | None = Field(None, ge=8, description="rows of the position table used (None: all)")
    skip_first: int = Field(1, ge=0, description="first positions dropped from the table and the resid_post means (the first-token outlier)")


def applies(acts: Activations) -> str | None:
    if acts.position_scheme != "learned":
        return f"not applicable: model uses {acts.position_scheme} positions, not a learned position table"
    return None


def _sinusoid_design(f: float, t: np.ndarray) -> np.ndarray:
    return np.column_stack([np.cos(2 * np.pi * f * t), np.sin(2 * np.pi * f * t), np.ones_like(t), t])


def _residual_sum(y: np.ndarray, t: np.ndarray, f: float) -> float:
    design = _sinusoid_design(f, t)
    coef = np.linalg.lstsq(design, y, rcond=None)[0]
    return float(np.sum((y - design @ coef) ** 2))


def _fit_sinusoid(y: np.ndarray) -> tuple[float, float, float]:
    """(cycles over the series, residual sum of squares, total sum of squares) of the best sinusoid + trend."""
    n = len(y)
    t = np.arange(n) / n
    spectrum = np.abs(np.fft.rfft(detrend(y)))
    peak = int(np.argmax(spectrum[1:]) + 1) if len(spectrum) > 1 else 1
    search = minimize_scalar(lambda f: _residual_sum(y, t, f), bounds=(max(peak - 1.0, 0.25), peak + 1.0), method="bounded")
    cycles = float(search.x)
    return cycles, _residual_sum(y, t, cycles), float(np.sum((y - y.mean()) ** 2))


def _helix(points: np.ndarray, components: int) -> tuple[float, float, list[float], np.ndarray] | None:
    """(residual, explained variance, cycles per component, PC coordinates), or None for a degenerate source."""
    if len(points) < 8 or np.ptp(points, axis=0).max() == 0:
        return None
    k = min(components, points.shape[1], len(points) - 1)
    pca = deterministic_pca(k)
    coords = pca.fit_transform(points)
    fits = [_fit_sinusoid(coords[:, j]) for j in range(k)]
    total = sum(f[2] for f in fits)
    if total == 0:
        return None
    residual = sum(f[1] for f in fits) / total
    return residual, float(pca.explained_variance_ratio_.sum()), [f[0] for f in fits], coords


def positional_helix(acts: Activations, params: Params, layers: tuple[int, ...], wanted: Wanted | None = None) -> Measurement:
    """Fit sinusoids to the top principal components of the position table and of per-position means."""
    not_applicable = applies(acts)
    if not_applicable:
        return invalid(NAME, not_applicable, layers, params)
    means = {b: acts.sites[Site(b, Point.RESID_POST)] for b in layers if Site(b, Point.RESID_POST) in acts.sites}
    means = {b: s for b, s in means.items() if s.position_sum is not None}
    if acts.position_table is None and not means:
        return invalid(NAME, "capture kept neither the position table nor resid_post position means", layers, params)
    reason = nonfinite_reason(acts, [Site(b, Point.RESID_POST) for b in means])
    if reason is None and acts.position_table is not None and not np.all(np.isfinite(acts.position_table)):
        reason = f"non-finite values in the position table ({int((~np.isfinite(acts.position_table)).sum())} values)"
    if reason:
        return invalid(NAME, reason, layers, params)
    rows = slice(params.skip_first, None if params.max_positions is None else params.skip_first + params.max_positions)
    table_fit = None
    if acts.position_table is not None:
        table_fit = _helix(acts.position_table[rows].astype(np.float64), params.components)
        if table_fit is None:
            return invalid(NAME, "the position table is constant or has fewer than 8 rows", layers, params)
    layer_fits = {}
    for b, stats in means.items():
        fit = _helix(stats.position_mean[rows], params.components)
        if fit is None:
            return invalid(NAME, f"the resid_post position means at block {b} are constant or span fewer than 8 positions", layers, params)
        layer_fits[b] = fit
    primary = table_fit or layer_fits[min(layer_fits)]

    def aggregate(i: int) -> float:
        return float(primary[i]) if table_fit else float(np.median([f[i] for f in layer_fits.values()]))

    cycles = primary[2][0]
    n_rows = len(primary[3])
    metrics = [
        HELIX_RESIDUAL.value(aggregate(0), {b: f[0] for b, f in layer_fits.items()}),
        EXPLAINED_VARIANCE.value(aggregate(1), {b: f[1] for b, f in layer_fits.items()}, components=params.components),
        PC0_CYCLES.value(float(cycles), {b: f[2][0] for b, f in layer_fits.items()}),
        PC0_PERIOD.value(float(n_rows / cycles)),
    ]
    details = {
        "source": np.array(["position_table" if table_fit else f"blocks.{min(layer_fits)}.resid_post"]),
        "pcs": primary[3].astype(np.float32),
        "cycles": np.asarray(primary[2]),
    }
    result = measurement(NAME, layers, params, metrics, details)
    return replace(result, aggregate_source="the position table") if table_fit else result


def planted_case(seed: int, planted: bool) -> Activations:
    """A table tracing a helix (1.5 turns, light noise) when planted; a Gaussian table otherwise."""
    table = helix_table(seed, 1.5, 0.05) if planted else np.random.default_rng(seed).standard_normal((256, 24))
    return with_table(table, seed)


def helix_table(seed: int, cycles: float, noise_level: float, rows: int = 256, d: int = 24) -> np.ndarray:
    """A position table tracing a helix (two sinusoid pairs and a ramp) in a random 5-dim subspace."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows) / rows
    curve = np.column_stack(
        [
            3 * np.cos(2 * np.pi * cycles * t),
            3 * np.sin(2 * np.pi * cycles * t),
            1.5 * np.cos(4 * np.pi * cycles * t),
            1.5 * np.sin(4 * np.pi * cycles * t),
            t,
        ]
    )
    basis = np.linalg.qr(rng.standard_normal((d, 5)))[0]
    return curve @ basis.T + noise_level * rng.standard_normal((rows, d))


def with_table(table: np.ndarray, seed: int) -> Activations:
    """Two blocks of noise around ``table`` as the model's learned position embeddings."""
    rng = np.random.default_rng(seed)
    resid = noise(rng, 2, 4, table.shape[0], table.shape[1]) + table
    return build_activations(resid, position_table=table, bos=False, seed=seed)


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=positional_helix,
    applies=applies,
    summary="learned position embeddings trace a helix: each top principal component is close to a sinusoid",
    metric_specs=(HELIX_RESIDUAL, EXPLAINED_VARIANCE, PC0_CYCLES, PC0_PERIOD),
    default_metric=HELIX_RESIDUAL.name,
    needs=Needs(position_means=("blocks.*.resid_post",), position_table=True),
    figures="geomcheck.report.figures:helix_figures",
    planted=Planted(planted_case, HELIX_RESIDUAL.name),
)
