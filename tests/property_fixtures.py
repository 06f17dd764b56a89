"""Planted activations for the property tests: each property's declared planted case, and orthogonal transforms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from geomcheck.capture.activations import Activations, SiteStats
# Re-exported for the tests: the synthetic builders, and planted builders that live with their properties.
from geomcheck.properties.attn_mlp_separation import separated_sites  # noqa: F401
from geomcheck.properties.first_position_norm import first_position_outlier  # noqa: F401
from geomcheck.properties.positional_helix import helix_table, with_table  # noqa: F401
from geomcheck.properties.synthetic import build_activations, noise, site_stats  # noqa: F401


def transformed(acts: Activations, matrix: np.ndarray) -> Activations:
    """The same activations with every vector multiplied by ``matrix`` (an orthogonal map times a scale)."""
    scale = float(np.linalg.norm(matrix[:, 0]))
    sites = {
        site: SiteStats(
            norms=(s.norms * scale).astype(np.float32),
            max_abs=s.max_abs * scale,
            position_sum=None if s.position_sum is None else s.position_sum @ matrix.T,
            samples=None if s.samples is None else (s.samples.astype(np.float64) @ matrix.T).astype(np.float32),
            nonfinite=s.nonfinite,
        )
        for site, s in acts.sites.items()
    }
    table = None if acts.position_table is None else acts.position_table @ matrix.T
    return Activations(
        model=acts.model,
        n_blocks=acts.n_blocks,
        hidden_size=acts.hidden_size,
        position_scheme=acts.position_scheme,
        tokens=acts.tokens,
        bos=acts.bos,
        sites=sites,
        sample_index=acts.sample_index,
        position_table=table,
        seed=acts.seed,
    )


@dataclass(frozen=True)
class PlantedCase:
    """A property's declared planted case, and which way its metric moves when the structure is there."""

    build: Callable[[int, bool], Activations]
    metric: str
    higher_when_planted: bool


def _planted() -> dict[str, PlantedCase]:
    from geomcheck.properties import REGISTRY

    cases = {}
    for name, prop in REGISTRY.items():
        if prop.planted is not None:
            direction = prop.metric_spec(prop.planted.metric).direction
            cases[name] = PlantedCase(prop.planted.build, prop.planted.metric, direction != "down")
    return cases


PLANTED: dict[str, PlantedCase] = _planted()
