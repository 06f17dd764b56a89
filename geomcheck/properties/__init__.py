"""Registry of geometric properties: every module here that declares ``PROPERTY``, and entry points.

A property is one module: its ``PROPERTY`` (a ``PropertyDef``) declares parameters, metrics, what it
reads from capture, its figures and its planted case, and the registry finds it by itself. A package
can ship properties under the ``geomcheck.properties`` entry-point group (``name = "module:PROPERTY"``).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from geomcheck.errors import GeomcheckError
from geomcheck.properties.base import Measurement, Metric, MetricSpec, Needs, PropertyDef, PropertyParams

ENTRY_POINT_GROUP = "geomcheck.properties"


def _built_in() -> list[PropertyDef]:
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        declared = getattr(module, "PROPERTY", None)
        if isinstance(declared, PropertyDef):
            found.append(declared)
    return found


def _from_entry_points() -> list[PropertyDef]:
    found = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            declared = point.load()
        except Exception as exc:  # a third-party package's import error, whatever it is, named as such
            raise GeomcheckError(f"the property entry point {point.name!r} ({point.value}) cannot be loaded: {exc}") from exc
        if not isinstance(declared, PropertyDef):
            raise GeomcheckError(f"the property entry point {point.name!r} ({point.value}) is not a PropertyDef")
        found.append(declared)
    return found


def _registry() -> dict[str, PropertyDef]:
    registry: dict[str, PropertyDef] = {}
    for prop in [*_built_in(), *_from_entry_points()]:
        if prop.name in registry:
            raise GeomcheckError(f"two properties are named {prop.name!r}; property names must be unique")
        registry[prop.name] = prop
    return registry


REGISTRY: dict[str, PropertyDef] = _registry()


def get(name: str) -> PropertyDef:
    try:
        return REGISTRY[name]
    except KeyError:
        raise GeomcheckError(f"unknown property {name!r}; known: {', '.join(REGISTRY)}") from None


__all__ = ["Measurement", "Metric", "MetricSpec", "Needs", "PropertyDef", "PropertyParams", "REGISTRY", "get"]
