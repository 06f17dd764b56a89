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

from types import MappingProxyType

import numpy as np
from pydantic import Field
from scipy.stats import spearmanr

from geomcheck.capture.activations import Activations
from geomcheck.capture.sites import Point, Site
from geomcheck.properties.base import (
    Measurement,
    Metric,
    PropertyDef,
    PropertyParams,
    Wanted,
    invalid,
    measurement,
    missing_reason,
    nonfinite_reason,
)

NAME = "layer_norm_growth"


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
        Metric("growth_ratio", "median norm at the last block / at the first", norm[layers[-1]] / norm[layers[0]]),
        Metric("growth_rho", "Spearman correlation of the median norm with depth", float(spearmanr(layers, values).statistic)),
        Metric("late_growth", f"median norm at the last block / at the middle block ({middle})", norm[layers[-1]] / norm[middle]),
        Metric("last_block_spike", "median norm at the last block / at the one before", norm[layers[-1]] / norm[layers[-2]]),
        Metric("final_norm_drop", "median norm after the final norm / at the model's last block", median_norm(final) / last_norm),
        Metric("median_norm", "median norm of positions after the first", float(np.median(values)), norm),
    ]
    return measurement(NAME, layers, params, metrics, {"blocks": np.asarray(layers), "median_norm": values})


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=layer_norm_growth,
    applies=applies,
    summary="the residual norm grows with depth, fastest late, spikes in the last block and drops at the final norm",
    metrics=("growth_ratio", "growth_rho", "late_growth", "last_block_spike", "final_norm_drop", "median_norm"),
    default_metric="growth_ratio",
    integer_metrics=(),
    min_change=MappingProxyType({"growth_ratio": (0.0, 0.1), "growth_rho": (0.05, 0.0), "late_growth": (0.0, 0.1), "last_block_spike": (0.0, 0.1), "final_norm_drop": (0.005, 0.15), "median_norm": (0.0, 0.1)}),
    per_layer_metrics=("median_norm",),
    positional_metrics=(),
)
