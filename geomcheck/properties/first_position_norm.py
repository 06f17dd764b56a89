"""How far the first position's vector outgrows the rest: the massive-activation / attention-sink signature.

Definition (Ning & Rangaraju, "Visualizing LLM Latent Space Geometry Through Dimensionality
Reduction", arXiv 2511.21594, where position 0 sits far from every other token in GPT-2 and LLaMA):
at site ``blocks.<b>.<point>`` (default ``resid_post``), for each sequence s,
``ratio_s = ||x_{s,0}|| / median_{t>=1} ||x_{s,t}||``; the per-layer ``ratio`` is its mean over
sequences and the aggregate is the median over ``layers``. Further metrics:

- ``onset_layer`` / ``last_layer``: the first and last block of the *band*, the longest run of
  consecutive blocks in ``layers`` whose ratio exceeds ``threshold`` (default 20; the earliest run on a
  tie); NaN if no block does. A run, not the first and last block above the threshold: Gemma-3-270M's
  ratio spikes to 29 at block 0 alone and stays at 5-17 after, so "first above 20" read block 0 as the
  onset, a pass for the wrong reason (issue 26).
- ``peak_ratio``: the largest per-block ratio over ``layers``: how massive the outlier gets at its height,
  whatever the depth profile (Gemma-3's sandwich norms let every position grow ~40x, so its outlier
  is 5-17x where the LLaMA-layout models reach 35-180x; the peak is what all of them share).
- ``max_abs_ratio``: max |component| at position 0 / median over positions >= 1 of the per-position
  max |component| (per layer; aggregate = median over layers).
- ``onset_depth`` / ``last_depth``: ``onset_layer`` / ``last_layer`` as a fraction of depth,
  b / (n_blocks - 1), so one bound fits models of any depth (geomcheck.spec.layers.Depth).
- ``position0_share``: the share of sequences whose largest norm sits at position 0 (per layer;
  aggregate = median over layers).

Where the outlier sits is reported whatever the metric: the measurement's note gives the position
histogram of each sequence's largest norm over ``layers``. A BOS the model never saw in training
moves the outlier off position 0 (Qwen2.5 with ``<|endoftext|>`` in front: ratio 0.7-1.5 while
the largest norms stay ~600x elsewhere), and the note makes that visible instead of a silent "no outlier".

Why a threshold of 20 rather than 10: in SmolLM2-135M with BOS the ratio is 2.3-10.6 in blocks
0-8 (block 2 reaches 10.6), 1.1-1.3 in blocks 9-10, then ~184 at block 11 decaying to ~36 at 27,
14 at 28 and 6.7 at 29; its random-init twin stays near 1. At 20 the onset is the real jump
(block 11) and the band ends at block 27.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

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

NAME = "first_position_norm"
# Every metric compares position 0 with later positions, so none exists for sequences of one position.
# A depth fraction's floor is about one block of a 24-30-block model (1/23 = 0.043, 1/29 = 0.034).
RATIO = MetricSpec("ratio", "norm at position 0 / median norm of later positions (mean over sequences)", "ratio",
                   per_layer=True, min_change=(0.0, 0.25), positional=True, direction="up", paired_floor=(0.0, 0.015))
ONSET_LAYER = MetricSpec("onset_layer", "first block of the longest run of blocks whose ratio exceeds {threshold:g} (NaN if none)", "block",
                         min_change=(1.0, 0.0), integer=True, positional=True)
LAST_LAYER = MetricSpec("last_layer", "last block of the longest run of blocks whose ratio exceeds {threshold:g} (NaN if none)",
                        "block", min_change=(1.0, 0.0), integer=True, positional=True)
PEAK_RATIO = MetricSpec("peak_ratio", "largest per-block ratio over the blocks", "ratio", min_change=(0.0, 0.25), positional=True,
                        direction="up", paired_floor=(0.0, 0.015))
MAX_ABS_RATIO = MetricSpec("max_abs_ratio", "largest |component| at position 0 / median of later positions' largest", "ratio",
                           per_layer=True, min_change=(0.0, 0.25), positional=True, paired_floor=(0.0, 0.05))
ONSET_DEPTH = MetricSpec("onset_depth", "onset_layer as a fraction of depth, b / (n_blocks - 1) (NaN if none)", "fraction of depth",
                         min_change=(0.05, 0.0), positional=True)
LAST_DEPTH = MetricSpec("last_depth", "last_layer as a fraction of depth, b / (n_blocks - 1) (NaN if none)", "fraction of depth",
                        min_change=(0.05, 0.0), positional=True)
POSITION0_SHARE = MetricSpec("position0_share", "share of sequences whose largest norm is at position 0", "share",
                             per_layer=True, min_change=(0.15, 0.0), positional=True)
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
    ratio, max_abs_ratio, share = {}, {}, {}
    argmax_counts = np.zeros(acts.length, dtype=np.int64)
    for b in layers:
        stats = acts.sites[Site(b, point)]
        norms = stats.norms.astype(np.float64)
        rest = np.median(norms[:, 1:], axis=1)
        rest_max = float(np.median(stats.max_abs[1:]))
        if np.any(rest == 0) or rest_max == 0:
            return invalid(NAME, f"the median norm of positions >= 1 is zero at {Site(b, point).name}", layers, params)
        ratio[b] = float(np.mean(norms[:, 0] / rest))
        max_abs_ratio[b] = float(stats.max_abs[0]) / rest_max
        largest = np.argmax(norms, axis=1)
        share[b] = float(np.mean(largest == 0))
        argmax_counts += np.bincount(largest, minlength=acts.length)
    band = longest_run([b for b in layers if ratio[b] > params.threshold], layers)
    onset = float(band[0]) if band else float("nan")
    last = float(band[-1]) if band else float("nan")
    n = acts.n_blocks
    metrics = [
        RATIO.value(float(np.median(list(ratio.values()))), ratio),
        ONSET_LAYER.value(onset, threshold=params.threshold),
        LAST_LAYER.value(last, threshold=params.threshold),
        MAX_ABS_RATIO.value(float(np.median(list(max_abs_ratio.values()))), max_abs_ratio),
        ONSET_DEPTH.value(_depth(onset, n)),
        LAST_DEPTH.value(_depth(last, n)),
        POSITION0_SHARE.value(float(np.median(list(share.values()))), share),
        PEAK_RATIO.value(float(max(ratio.values()))),
    ]
    position_norms = np.stack([np.median(acts.sites[Site(b, point)].norms, axis=0) for b in layers]).astype(np.float32)
    details = {
        "blocks": np.asarray(layers),
        "ratio": np.array([ratio[b] for b in layers]),
        "median_norm_by_position": position_norms,
        "largest_norm_position_counts": argmax_counts,
    }
    return measurement(NAME, layers, params, metrics, details, notes=(largest_norm_note(argmax_counts, len(layers)),))


def longest_run(above: list[int], layers: tuple[int, ...]) -> list[int]:
    """The longest run of ``above`` that is consecutive in ``layers`` (the earliest on a tie); [] for none."""
    position = {b: i for i, b in enumerate(layers)}
    best: list[int] = []
    run: list[int] = []
    for b in above:
        run = run + [b] if run and position[b] == position[run[-1]] + 1 else [b]
        if len(run) > len(best):
            best = run
    return best


def _depth(block: float, n_blocks: int) -> float:
    """The same b / (n - 1) as geomcheck.spec.layers.Depth (NaN stays NaN)."""
    return block / (n_blocks - 1) if n_blocks > 1 else 0.0 * block


def largest_norm_note(counts: np.ndarray, n_layers: int, shown: int = 3) -> str:
    """``largest norm per sequence: position 0 in 97%, position 1 in 2%, ...`` over the selected blocks."""
    total = int(counts.sum())
    if total == 0:
        return "largest norm per sequence: no positions"
    order = [int(p) for p in np.argsort(-counts, kind="stable")[:shown] if counts[p] > 0]
    parts = ", ".join(f"position {p} in {counts[p] / total:.0%}" for p in order)
    return f"largest norm per sequence ({n_layers} block{'s' if n_layers != 1 else ''}): {parts}"


def planted_case(seed: int, planted: bool, blocks: int = 3, n: int = 6, t: int = 32, d: int = 16) -> Activations:
    """Unit-norm tokens, position 0 at norm 50 when planted."""
    return first_position_outlier(seed, 50.0 if planted else 1.0, blocks, n, t, d)


def first_position_outlier(seed: int, ratio: float, blocks: int = 3, n: int = 6, t: int = 32, d: int = 16) -> Activations:
    """Unit-norm tokens everywhere except position 0, whose norm is ``ratio``."""
    rng = np.random.default_rng(seed)
    x = noise(rng, blocks, n, t, d)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x[:, :, 0] *= ratio
    return build_activations(x, seed=seed)


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=first_position_norm,
    applies=applies,
    summary="the first position's norm dwarfs the median of later positions in a band of middle blocks",
    metric_specs=(RATIO, ONSET_LAYER, LAST_LAYER, MAX_ABS_RATIO, ONSET_DEPTH, LAST_DEPTH, POSITION0_SHARE, PEAK_RATIO),
    default_metric=RATIO.name,
    figures="geomcheck.report.figures:first_position_figures",
    planted=Planted(planted_case, RATIO.name),
)
