"""Registry of geometric properties; each lives in its own module and exposes ``PROPERTY``."""

from __future__ import annotations

from geomcheck.errors import GeomcheckError
from geomcheck.properties.attn_mlp_separation import PROPERTY as _attn_mlp_separation
from geomcheck.properties.base import Measurement, Metric, PropertyDef, PropertyParams
from geomcheck.properties.first_position_norm import PROPERTY as _first_position_norm
from geomcheck.properties.layer_norm_growth import PROPERTY as _layer_norm_growth
from geomcheck.properties.positional_helix import PROPERTY as _positional_helix
from geomcheck.properties.repeated_token_convergence import (
    PROPERTY as _repeated_token_convergence,
)
from geomcheck.properties.sequence_structure import PROPERTY as _sequence_structure

REGISTRY: dict[str, PropertyDef] = {
    prop.name: prop
    for prop in (
        _attn_mlp_separation,
        _first_position_norm,
        _positional_helix,
        _sequence_structure,
        _layer_norm_growth,
        _repeated_token_convergence,
    )
}


def get(name: str) -> PropertyDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise GeomcheckError(f"unknown property {name!r}; known: {', '.join(REGISTRY)}") from None


__all__ = ["Measurement", "Metric", "PropertyDef", "PropertyParams", "REGISTRY", "get"]
