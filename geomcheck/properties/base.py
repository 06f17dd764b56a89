"""The contract every property follows: declared parameters in, a frozen Measurement out.

A property never loads models, hooks modules or reads files; it reads an Activations object and
returns numbers. Whether those numbers pass is decided elsewhere (geomcheck.spec.expect), so the same
measurement serves fixed thresholds, baselines and side-by-side comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Generic, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.base import TransformerMixin

from geomcheck.capture.activations import Activations
from geomcheck.capture.sites import Site
from geomcheck.properties.linear import TopPCA


class PropertyParams(BaseModel):
    """Base of every property's parameter model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


P = TypeVar("P", bound=PropertyParams)


@dataclass(frozen=True)
class Metric:
    """One named number a spec can constrain: an aggregate over the layers, per-layer values, or both."""

    name: str
    description: str
    aggregate: float | None = None
    per_layer: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    # Filled by geomcheck.gate.uncertainty, never by a property: the standard error of each value
    # over input sampling, and the leave-one-group-out values it came from (kept for paired tests).
    se: float | None = None
    per_layer_se: Mapping[int, float] = field(default_factory=lambda: MappingProxyType({}))
    replicates: tuple[float, ...] | None = None
    per_layer_replicates: Mapping[int, tuple[float, ...]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Measurement:
    """What a property found. ``valid`` is False (with ``reason``) when the inputs cannot support it."""

    property: str
    valid: bool
    reason: str | None
    layers: tuple[int, ...]
    params: Mapping[str, object]
    metrics: Mapping[str, Metric] = field(default_factory=lambda: MappingProxyType({}))
    details: Mapping[str, np.ndarray] = field(default_factory=lambda: MappingProxyType({}))
    # Lines a person should see beside any check of this measurement, pass or fail (e.g. where an outlier sits).
    notes: tuple[str, ...] = ()
    # Where the aggregates come from when it is not ``layers`` (e.g. "the position table"); None: the layers.
    aggregate_source: str | None = None

    def metric(self, name: str) -> Metric:
        return self.metrics[name]


@dataclass(frozen=True)
class Wanted:
    """Which metrics a caller needs, so a repeated measurement (a jackknife replicate) can skip the rest.

    A property may ignore it and compute everything; it must never return a different value for a
    metric it was asked for.
    """

    metrics: frozenset[str]
    per_layer: bool = True

    def needs(self, metric: str, *, per_layer: bool = False) -> bool:
        return metric in self.metrics and (self.per_layer or not per_layer)



def deterministic_pca(components: int) -> TransformerMixin:
    """An exact PCA (``TopPCA``): through whichever second-moment matrix is smaller, or, when both are
    wider than ``spectral.EXACT_WIDTH``, by seeded block Krylov iteration to a residual tolerance.

    Either way a measurement is repeatable and its cost grows linearly with the width once the width
    is large.
    """
    return TopPCA(components)


def invalid(name: str, reason: str, layers: Iterable[int], params: PropertyParams) -> Measurement:
    return Measurement(name, False, reason, tuple(layers), params.model_dump())


def measurement(
    name: str,
    layers: Iterable[int],
    params: PropertyParams,
    metrics: Iterable[Metric],
    details: Mapping[str, np.ndarray] | None = None,
    notes: Iterable[str] = (),
) -> Measurement:
    return Measurement(
        property=name,
        valid=True,
        reason=None,
        layers=tuple(layers),
        params=params.model_dump(),
        metrics=MappingProxyType({m.name: m for m in metrics}),
        details=MappingProxyType(dict(details or {})),
        notes=tuple(notes),
    )


def nonfinite_reason(acts: Activations, sites: Iterable[Site]) -> str | None:
    """The reason a measurement over these sites is invalid because of NaN/inf, or None."""
    bad = [(site, acts.sites[site].nonfinite) for site in sites if site in acts.sites and acts.sites[site].nonfinite]
    if not bad:
        return None
    listed = ", ".join(f"{site.name} ({count} token vectors)" for site, count in bad[:5])
    more = f" and {len(bad) - 5} more sites" if len(bad) > 5 else ""
    return f"non-finite activations (NaN or inf) at {listed}{more}"


def missing_reason(acts: Activations, sites: Iterable[Site], what: str) -> str | None:
    """The reason a measurement is invalid because capture did not keep what it needs, or None."""
    absent = [site.name for site in sites if site not in acts.sites]
    if absent:
        return f"capture did not record {what} at {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}"
    return None


@dataclass(frozen=True)
class PropertyDef(Generic[P]):
    """Registry entry: the YAML key, registry key, module name and function name are the same word."""

    name: str
    params: type[P]
    measure: Callable[[Activations, P, tuple[int, ...]], Measurement]
    applies: Callable[[Activations], str | None]
    summary: str
    metrics: tuple[str, ...]
    default_metric: str
    # For the baseline gate: metrics whose values are block indices (compared as integers), and per
    # metric the smallest change (abs, rel) worth an alarm however significant it is statistically.
    integer_metrics: tuple[str, ...] = ()
    min_change: Mapping[str, tuple[float, float]] = field(default_factory=lambda: MappingProxyType({}))
    # For spec validation: metrics that have per-layer values (None: not declared, nothing is refused),
    # and metrics that compare positions, which sequences of a single position cannot give.
    per_layer_metrics: tuple[str, ...] | None = None
    positional_metrics: tuple[str, ...] = ()
