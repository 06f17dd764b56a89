"""How far the first position's vector outgrows the rest: the massive-activation / attention-sink signature.

Definition (Ning & Rangaraju, "Visualizing LLM Latent Space Geometry Through Dimensionality
Reduction", arXiv 2511.21594, where position 0 sits far from every other token in GPT-2 and LLaMA):
at site ``blocks.<b>.<point>`` (default ``resid_post``), for each sequence s,
``ratio_s = ||x_{s,0}|| / median_{t>=1} ||x_{s,t}||``; the per-layer ``ratio`` is its mean over
sequences and the aggregate is the median over ``layers``. Further metrics:

- ``onset_layer``: first block in ``layers`` whose ratio exceeds ``threshold`` (default 20); NaN if none.
- ``last_layer``: last block in ``layers`` whose ratio exceeds ``threshold``; NaN if none.
- ``max_abs_ratio``: max |component| at position 0 / median over positions >= 1 of the per-position
  max |component| (per layer; aggregate = median over layers).

Why a threshold of 20 rather than 10: in SmolLM2-135M with BOS the ratio is 2.3-10.6 in blocks
0-8 (block 2 reaches 10.6), 1.1-1.3 in blocks 9-10, then ~184 at block 11 decaying to ~36 at 27,
14 at 28 and 6.7 at 29; its random-init twin stays near 1. At 20 the onset is the real jump
(block 11) and the band ends at block 27.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

import numpy as np
from pydantic import Field

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

NAME = "first_position_norm"
BlockPoint = Literal["attn_out", "resid_mid", "mlp_out", "resid_post", "norm_attn", "norm_mlp"]


class Params(PropertyParams):
    """Which site to read and where the massive-activation band starts."""

    point: BlockPoint = Field("resid_post", description="block point whose norms are compared")
    threshold: float = Field(20.0, gt=1.0, le=1e6, description="ratio above which a block counts as massive")


def applies(acts: Activations) -> str | None:
    if acts.length < 2:
        return "not applicable: sequences of one token have no positions to compare position 0 with"
    return None


def first_position_norm(acts: Activations, params: Params, layers: tuple[int, ...], wanted: Wanted | None = None) -> Measurement:
    """Measure the position-0 norm ratio per block and the band of blocks where it is massive."""
    if not layers:
        return invalid(NAME, "no layers selected", layers, params)
    point = Point(params.point)
    sites = [Site(b, point) for b in layers]
    reason = missing_reason(acts, sites, f"{point.value} norms") or nonfinite_reason(acts, sites)
    if reason is None and acts.length < 2:
        reason = "sequences of one token have no positions to compare position 0 with"
    if reason:
        return invalid(NAME, reason, layers, params)
    ratio, max_abs_ratio = {}, {}
    for b in layers:
        stats = acts.sites[Site(b, point)]
        norms = stats.norms.astype(np.float64)
        rest = np.median(norms[:, 1:], axis=1)
        rest_max = float(np.median(stats.max_abs[1:]))
        if np.any(rest == 0) or rest_max == 0:
            return invalid(NAME, f"the median norm of positions >= 1 is zero at {Site(b, point).name}", layers, params)
        ratio[b] = float(np.mean(norms[:, 0] / rest))
        max_abs_ratio[b] = float(stats.max_abs[0]) / rest_max
    above = [b for b in layers if ratio[b] > params.threshold]
    metrics = [
        Metric("ratio", "norm at position 0 / median norm of later positions (mean over sequences)", float(np.median(list(ratio.values()))), ratio),
        Metric("onset_layer", f"first block whose ratio exceeds {params.threshold:g} (NaN if none)", float(above[0]) if above else float("nan")),
        Metric("last_layer", f"last block whose ratio exceeds {params.threshold:g} (NaN if none)", float(above[-1]) if above else float("nan")),
        Metric("max_abs_ratio", "largest |component| at position 0 / median of later positions' largest", float(np.median(list(max_abs_ratio.values()))), max_abs_ratio),
    ]
    position_norms = np.stack([np.median(acts.sites[Site(b, point)].norms, axis=0) for b in layers]).astype(np.float32)
    details = {"blocks": np.asarray(layers), "ratio": np.array([ratio[b] for b in layers]), "median_norm_by_position": position_norms}
    return measurement(NAME, layers, params, metrics, details)


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=first_position_norm,
    applies=applies,
    summary="the first position's norm dwarfs the median of later positions in a band of middle blocks",
    metrics=("ratio", "onset_layer", "last_layer", "max_abs_ratio"),
    default_metric="ratio",
    integer_metrics=("onset_layer", "last_layer"),
    min_change=MappingProxyType({"ratio": (0.0, 0.25), "max_abs_ratio": (0.0, 0.25), "onset_layer": (1.0, 0.0), "last_layer": (1.0, 0.0)}),
    per_layer_metrics=("ratio", "max_abs_ratio"),
    positional_metrics=("ratio", "onset_layer", "last_layer", "max_abs_ratio"),
)
