"""Whether a token repeated along a sequence drifts towards the first position's representation.

Definition (Ning & Rangaraju, "Visualizing LLM Latent Space Geometry Through Dimensionality
Reduction", arXiv 2511.21594, who feed one token repeated and watch later positions converge): on
inputs of one token repeated (optionally after BOS; ``inputs: mode: repeated_token``), with m_t the
mean over sequences of ``blocks.<b>.resid_post`` at position t and c_t = cos(m_t, m_r) for the
reference position r = ``reference_position`` (default 0, the BOS when present), over the positions
t > r:

- ``convergence_rho`` (default): Spearman rank correlation of c_t with t, per layer; aggregate =
  median over ``layers``. +1 means the similarity to position r rises steadily along the sequence.
- ``convergence_gain``: mean c_t over the last ``late_fraction`` of positions minus mean c_t over
  the first 8 compared positions.
- ``late_cosine``: mean c_t over the last ``late_fraction`` of positions.

Per-position means are used because the reference state (the BOS, or the first copy) is the same
in every sequence, while each sequence repeats a different token; the mean keeps what is shared.
SmolLM2-135M with BOS, 8 x 256 repeated tokens: rho 0.88-0.96 in blocks 9-27, -1 in every block of
its random-init twin (whose later copies drift away from position 0).
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
    Needs,
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

NAME = "repeated_token_convergence"
CONVERGENCE_RHO = MetricSpec("convergence_rho", "Spearman correlation of cos(m_t, m_{reference}) with position t", "rank correlation",
                             per_layer=True, min_change=(0.1, 0.0), positional=True, direction="up")
CONVERGENCE_GAIN = MetricSpec("convergence_gain", "late minus early cosine similarity to the reference position", "cosine",
                              per_layer=True, min_change=(0.0, 0.25), positional=True)
LATE_COSINE = MetricSpec("late_cosine", "cosine similarity of late positions to the reference position", "cosine",
                         per_layer=True, min_change=(0.05, 0.0), positional=True)
# Below this spread the cosines along the sequence are float rounding, not a trend (float32 captures).
CONSTANT_COSINE = 1e-5
EARLY_POSITIONS = 8


class Params(PropertyParams):
    """Which position the later ones are compared with, and what counts as late."""

    reference_position: int = Field(0, ge=0, description="position whose mean state the others are compared with")
    late_fraction: float = Field(0.25, gt=0.0, le=1.0, description="share of the compared positions that counts as late")


def applies(acts: Activations) -> str | None:
    body = acts.tokens[:, 1:] if acts.bos else acts.tokens
    if body.shape[1] < 2 or np.any(body != body[:, :1]):
        return "not applicable: needs inputs of one token repeated (inputs: mode: repeated_token)"
    return None


def repeated_token_convergence(acts: Activations, params: Params, layers: tuple[int, ...], wanted: Wanted | None = None) -> Measurement:
    """Measure how the cosine similarity of each later position to the reference position changes along the sequence."""
    if not layers:
        return invalid(NAME, "no layers selected", layers, params)
    sites = [Site(b, Point.RESID_POST) for b in layers]
    reason = missing_reason(acts, sites, "resid_post")
    if reason is None and any(acts.sites[s].position_sum is None for s in sites):
        reason = "capture did not keep resid_post position means (CapturePlan.position_means)"
    reason = reason or nonfinite_reason(acts, sites)
    compared = acts.length - params.reference_position - 1
    if reason is None and compared < 3:
        reason = f"needs at least 3 positions after position {params.reference_position}; got {max(compared, 0)}"
    if reason:
        return invalid(NAME, reason, layers, params)
    positions = np.arange(params.reference_position + 1, acts.length)
    late = max(1, int(round(compared * params.late_fraction)))
    early = min(EARLY_POSITIONS, compared)
    rho, gain, late_cos, curves = {}, {}, {}, []
    for b in layers:
        means = acts.sites[Site(b, Point.RESID_POST)].position_mean
        reference = means[params.reference_position]
        norms = np.linalg.norm(means[positions], axis=1) * np.linalg.norm(reference)
        if np.any(norms == 0):
            return invalid(NAME, f"zero-norm mean state at block {b}; cosine similarity is undefined", layers, params)
        cosine = means[positions] @ reference / norms
        if np.ptp(cosine) <= CONSTANT_COSINE:
            # Identical tokens with nothing before them give every position the same state in a causal
            # model (attention averages identical values), so only rounding noise would be ranked.
            hint = "" if acts.bos else "; without BOS every copy of the token has the same state, so set inputs bos: true"
            return invalid(NAME, f"cosine similarity is constant along the sequence at block {b}{hint}", layers, params)
        rho[b] = float(spearmanr(positions, cosine).statistic)
        gain[b] = float(cosine[-late:].mean() - cosine[:early].mean())
        late_cos[b] = float(cosine[-late:].mean())
        curves.append(cosine)

    def median(values: dict[int, float]) -> float:
        return float(np.median(list(values.values())))

    metrics = [
        CONVERGENCE_RHO.value(median(rho), rho, reference=params.reference_position),
        CONVERGENCE_GAIN.value(median(gain), gain),
        LATE_COSINE.value(median(late_cos), late_cos),
    ]
    details = {"blocks": np.asarray(layers), "positions": positions, "cosine": np.stack(curves).astype(np.float32)}
    return measurement(NAME, layers, params, metrics, details)


def planted_case(seed: int, planted: bool, blocks: int = 3, n: int = 6, t: int = 64, d: int = 16) -> Activations:
    """One repeated token after BOS; when planted, its states drift from their own to the BOS state."""
    rng = np.random.default_rng(seed)
    x = noise(rng, blocks, n, t, d)
    bos_state = rng.standard_normal((blocks, 1, 1, d)) * 3
    x[:, :, :1] = bos_state
    if planted:
        weight = np.linspace(0, 1, t - 1)[None, None, :, None]
        x[:, :, 1:] = (1 - weight) * x[:, :, 1:] + weight * bos_state
    tokens = np.repeat(rng.integers(10, 500, size=(n, 1)), t, axis=1)
    tokens[:, 0] = 1
    return build_activations(x, tokens=tokens, seed=seed)


PROPERTY = PropertyDef(
    name=NAME,
    params=Params,
    measure=repeated_token_convergence,
    applies=applies,
    summary="with one token repeated, later positions grow more similar to the first position",
    metric_specs=(CONVERGENCE_RHO, CONVERGENCE_GAIN, LATE_COSINE),
    default_metric=CONVERGENCE_RHO.name,
    needs=Needs(position_means=("blocks.*.resid_post",)),
    figures="geomcheck.report.figures:repeated_token_figures",
    planted=Planted(planted_case, CONVERGENCE_RHO.name),
)
