"""How the residual stream's norm grows with depth, spikes in the last block and collapses at the final norm.

Definition (Ning & Rangaraju, "Visualizing LLM Latent Space Geometry Through Dimensionality
Reduction", arXiv 2511.21594, who see hidden-state norms rise through the layers with a jump in the
last block): with n_b = median ||x|| over every sequence and position >= ``skip_first`` at
``blocks.<b>.resid_post`` (default skip 1, so the first-token outlier does not count):

- ``growth_ratio`` (default): n_last / n_first over ``layers``.
- ``growth_rho``: Spearman rank correlation of n_b with depth over ``layers``.
- ``late_growth``: n_last / n_mid, mid the middle block of ``layers``; trained models grow fastest late.
- ``last_block_spike``: n_last / n_second_to_last of ``layers``.
- ``final_norm_drop``: median norm after the final norm / n of the model's last block.
- ``median_norm``: n_b per layer (aggregate: median over layers).

Pass the full block range: the spike and the final-norm drop read the last blocks. A residual
stream of random-init blocks also grows (each block adds a roughly independent vector), so
``growth_rho`` is ~1 for both trained and random SmolLM2-135M; the ratios tell them apart
(16 x 256 corpus tokens: growth 21 vs 12, late growth 5.3 vs 1.4, spike 1.20 vs 1.02,
final-norm drop 0.05 vs 0.80).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from scipy.stats import spearmanr

from geomcheck.capture.activations import Activations
from geomcheck.capture.sites import Point, Site
from geomcheck.properties.base import (
    Measurement,
    MetricSpec,
    Planted,
    PropertyDef,
    PropertyParams,
    Wanted,
    invalid,
    measurement,
    missing_reason,
    nonfinite_reason,
)
from geomcheck.properties.synthetic import build_activations, noise

NAME = "layer_norm_growth"
GROWTH_RATIO = MetricSpec("growth_ratio", "median norm at the last block / at the first", "ratio", min_change=(0.0, 0.1), direction="up",
                          paired_floor=(0.0, 0.01))
GROWTH_RHO = MetricSpec("growth_rho", "Spearman correlation of the median norm with depth", "rank correlation", min_change=(0.05, 0.0))
LATE_GROWTH = MetricSpec("late_growth", "median norm at the last block / at the middle block ({middle})", "ratio", min_change=(0.0, 0.1),
                         paired_floor=(0.0, 0.01))
LAST_BLOCK_SPIKE = MetricSpec("last_block_spike", "median norm at the last block / at the one before", "ratio", min_change=(0.0, 0.1),
                              paired_floor=(0.0, 0.01))
FINAL_NORM_DROP = MetricSpec("final_norm_drop", "median norm after the final norm / at the model's last block", "ratio",
                             min_change=(0.005, 0.15), paired_floor=(0.0, 0.015))
MEDIAN_NORM = MetricSpec("median_norm", "median norm of positions after the first", "norm", per_layer=True, min_change=(0.0, 0.1),
                         paired_floor=(0.0, 0.01))


class Params(PropertyParams):
    """Which positions count towards each block's median norm."""

    skip_first: int = Field(1, ge=0, description="positions below this are left out (the BOS / first token)")


def applies(acts: Activations) -> str | None:
    return None


def layer_norm_growth(acts: Activations, params: Params, layers: tuple[int, ...], wanted: Wanted | None = None) -> Measurement:
    """Measure the median residual norm per block and how it changes with depth and at the final norm."""
    if len(layers) < 3:
        return invalid(NAME, f"needs at least 3 blocks to describe growth; got {len(layers)}", layers, params)
    layers = tuple(sorted(layers))
    last_block = Site(acts.n_blocks - 1, Point.RESID_POST)
    final = Site(None, Point.FINAL_NORM)
    sites = [Site(b, Point.RESID_POST) for b in layers]
    reason = missing_reason(acts, [*sites, last_block, final], "norms") or nonfinite_reason(acts, [*sites, last_block, final])
    if reason is None and acts.length <= params.skip_first:
        reason = f"sequences of {acts.length} positions have none from position {params.skip_first}"
    if reason:
        return invalid(NAME, reason, layers, params)

    def median_norm(site: Site) -> float:
        return float(np.median(acts.sites[site].norms[:, params.skip_first :]))

    norm = {b: median_norm(Site(b, Point.RESID_POST)) for b in layers}
    values = np.array([norm[b] for b in layers])
    last_norm = median_norm(last_block)
    if np.any(values == 0) or last_norm == 0:
        zero = [b for b in sorted({*layers, last_block.block}) if median_norm(Site(b, Point.RESID_POST)) == 0]
        return invalid(NAME, f"the median resid_post norm is zero at blocks {zero[:5]}", layers, params)
    if np.ptp(values) == 0:
        return invalid(NAME, "the median norm is the same at every block, so its rank correlation is undefined", layers, params)
    middle = layers[len(layers) // 2]
    metrics = [
        GROWTH_RATIO.value(norm[layers[-1]] / norm[layers[0]]),
        GROWTH_RHO.value(float(spearmanr(layers, values).statistic)),
        LATE_GROWTH.value(norm[layers[-1]] / norm[middle], middle=middle),
        LAST_BLOCK_SPIKE.value(norm[layers[-1]] / norm[layers[-2]]),
        FINAL_NORM_DROP.value(median_norm(final) / last_norm),
        MEDIAN_NORM.value(float(np.median(values)), norm),
    ]
    return measurement(NAME, layers, params, metrics, {"blocks": np.asarray(layers), "median_norm": values})


def planted_case(seed: int, planted: bool, blocks: int = 6, n: int = 4, t: int = 32, d: int = 16) -> Activations:
    """Block b scaled by 1.5**b when planted; unscaled noise otherwise."""
    rng = np.random.default_rng(seed)
    scale = (1.5 if planted else 1.0) ** np.arange(blocks)
    return build_activations(noise(rng, blocks, n, t, d) * scale[:, None, None, None], seed=seed)


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=layer_norm_growth,
    applies=applies,
    summary="the residual norm grows with depth, fastest late, spikes in the last block and drops at the final norm",
    metric_specs=(GROWTH_RATIO, GROWTH_RHO, LATE_GROWTH, LAST_BLOCK_SPIKE, FINAL_NORM_DROP, MEDIAN_NORM),
    default_metric=GROWTH_RATIO.name,
    figures="geomcheck.report.figures:norm_growth_figures",
    planted=Planted(planted_case, GROWTH_RATIO.name),
)
