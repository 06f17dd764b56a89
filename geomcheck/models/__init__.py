"""Resolving model references and loading them with the adapter table that maps their sites."""

from __future__ import annotations

from geomcheck.lazy_exports import lazy_getattr

_EXPORTS = {
    "HUB_ALIASES": "geomcheck.models.loader",
    "PACKAGED": "geomcheck.models.loader",
    "RANDOM_PREFIX": "geomcheck.models.loader",
    "LoadOptions": "geomcheck.models.loader",
    "LoadedModel": "geomcheck.models.loader",
    "ModelRef": "geomcheck.models.loader",
    "availability": "geomcheck.models.loader",
    "load": "geomcheck.models.loader",
    "resolve": "geomcheck.models.loader",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
