"""Registry of geometric properties; each lives in its own module and exposes ``PROPERTY``."""

from __future__ import annotations

from ..errors import GeomcheckError
from .attn_mlp_separation import PROPERTY as _attn_mlp_separation
from .base import Measurement, Metric, PropertyDef, PropertyParams
from .first_position_norm import PROPERTY as _first_position_norm
from .layer_norm_growth import PROPERTY as _layer_norm_growth
from .positional_helix import PROPERTY as _positional_helix
from .repeated_token_convergence import PROPERTY as _repeated_token_convergence
from .sequence_structure import PROPERTY as _sequence_structure

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
