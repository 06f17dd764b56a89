"""Spec files: YAML read with positions, validated into frozen models, and the pass/fail decision."""

from __future__ import annotations

from geomcheck.lazy_exports import lazy_getattr

_EXPORTS = {
    "Check": "geomcheck.spec.schema",
    "Expectation": "geomcheck.spec.schema",
    "Inputs": "geomcheck.spec.schema",
    "Spec": "geomcheck.spec.schema",
    "json_schema": "geomcheck.spec.schema",
    "load_spec": "geomcheck.spec.schema",
    "load_specs": "geomcheck.spec.schema",
    "parse_spec": "geomcheck.spec.schema",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
