"""Capturing activations: site names, input batches, streaming hooks and what they leave behind."""

from __future__ import annotations

from geomcheck.lazy_exports import lazy_getattr

_EXPORTS = {
    "CapturePlan": "geomcheck.capture.hooks",
    "capture": "geomcheck.capture.hooks",
    "model_sites": "geomcheck.capture.hooks",
    "Activations": "geomcheck.capture.activations",
    "SiteStats": "geomcheck.capture.activations",
    "InputSpec": "geomcheck.capture.inputs",
    "TokenBatch": "geomcheck.capture.inputs",
    "build_batch": "geomcheck.capture.inputs",
    "Point": "geomcheck.capture.sites",
    "Site": "geomcheck.capture.sites",
}

__getattr__ = lazy_getattr(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
