"""The contract every property follows: declared parameters in, a frozen Measurement out.

A property never loads models, hooks modules or reads files; it reads an Activations object and
returns numbers. Whether those numbers pass is decided elsewhere (geomcheck.spec.expect), so the same
measurement serves fixed thresholds, baselines and side-by-side comparisons.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, Protocol, TypeVar

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


Direction = Literal["up", "down"]


@dataclass(frozen=True)
class MetricSpec:
    """One metric, declared once: everything the spec parser, the gate and the report need to know of it.

    A property builds its numbers with ``value`` so the name and description it reports are the ones
    declared here; the registry reads the rest (per-layer or not, unit, the gate's smallest relevant
    change, which way planted structure moves it).
    """

    name: str
    description: str  # may hold {fields} filled by ``value`` (a parameter, a block chosen from the data)
    unit: str  # "ratio", "accuracy", "block", "fraction of depth", "share", ...
    per_layer: bool = False
    min_change: tuple[float, float] = (0.0, 0.0)  # (abs, rel): smaller drifts never alarm (geomcheck.gate.drift)
    integer: bool = False  # values are block indices, compared as whole numbers
    positional: bool = False  # compares positions: sequences of a single position cannot give it
    # Which way planted structure (``PropertyDef.planted``) moves it against noise; None where no planted
    # case speaks for it. Not a claim about trained models against their twins, which can differ
    # (sequence_structure: the random twin has more); those are measured per family in docs/properties.md.
    direction: Direction | None = None
    # (abs, rel): the smallest change numerics cannot explain, used on the baseline's own token ids (paired),
    # where input noise cancels and only harmless numerical changes (bf16/fp16/Q8_0 round trips, a re-save)
    # are left to tell apart from damage. Set about ten times above the largest such change measured on
    # SmolLM2-135M (benchmarks/damage_zoo.py), per block for per-block metrics. A per-block metric with one
    # takes part in the paired profile test (geomcheck.gate.profile); without one, paired runs use min_change.
    paired_floor: tuple[float, float] | None = None

    def value(self, aggregate: float | None = None, per_layer: Mapping[int, float] | None = None, **fill: object) -> Metric:
        description = self.description.format(**fill) if fill else self.description
        return Metric(self.name, description, aggregate, MappingProxyType(dict(per_layer or {})))


@dataclass(frozen=True)
class Needs:
    """What a property reads from capture beyond per-token norms and maxima (which capture always keeps).

    Site patterns are globs over site names (``blocks.*.attn_out``). Capture keeps samples and per-position
    means only where some check at hand needs them (geomcheck.capture.plan.plan_for): on an accelerator the
    per-group position sums are most of what crosses to the host.
    """

    samples: tuple[str, ...] = ()
    position_means: tuple[str, ...] = ()
    position_table: bool = False  # reads the learned position embeddings (a weight, not an activation)


class Measure(Protocol):
    def __call__(self, acts: Activations, params: Any, layers: tuple[int, ...], wanted: Wanted | None = None, /) -> Measurement: ...


@dataclass(frozen=True)
class Planted:
    """Activations with the property's structure planted (``build(seed, True)``) or plain noise (``False``).

    The conformance suite runs every registered property on its own planted case: the metric must move
    in its declared direction (tests/test_properties_conformance.py).
    """

    build: Callable[[int, bool], Activations]
    metric: str


@dataclass(frozen=True)
class PropertyDef(Generic[P]):
    """One property, declared as one unit: registry key (= YAML key = module = function name), parameters,
    metrics, what it needs from capture, how to draw it and how to plant it.

    ``figures`` names the report's builder as ``module:function`` (the report imports it; a property never
    imports plotting code). Built-in properties are found by module (``geomcheck.properties.*``), others
    through the ``geomcheck.properties`` entry-point group.
    """

    name: str
    params: type[P]
    measure: Measure
    applies: Callable[[Activations], str | None]
    summary: str
    metric_specs: tuple[MetricSpec, ...]
    default_metric: str
    needs: Needs = Needs()
    figures: str | None = None
    planted: Planted | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.metric_specs]
        if len(set(names)) != len(names) or self.default_metric not in names:
            raise ValueError(f"property {self.name!r}: metric names must be unique and include the default {self.default_metric!r}")

    def metric_spec(self, name: str) -> MetricSpec:
        return next(m for m in self.metric_specs if m.name == name)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metric_specs)

    @property
    def integer_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metric_specs if m.integer)

    @property
    def paired_floors(self) -> Mapping[str, tuple[float, float]]:
        return {m.name: m.paired_floor for m in self.metric_specs if m.paired_floor is not None}

    @property
    def min_change(self) -> Mapping[str, tuple[float, float]]:
        return MappingProxyType({m.name: m.min_change for m in self.metric_specs})

    @property
    def per_layer_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metric_specs if m.per_layer)

    @property
    def positional_metrics(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metric_specs if m.positional)
