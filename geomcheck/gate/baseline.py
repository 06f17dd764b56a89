"""Recorded measurements of a checkpoint, compared with later runs within per-check tolerances.

A baseline is one JSON file per (model, spec), keys sorted and one value per line so that a
changed number shows up as a one-line diff in review. Files are replaced atomically: an
interrupted run leaves the previous baseline or the new one, never half of either.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from geomcheck import __version__
from geomcheck.paths import confined, safe_component
from geomcheck.properties.base import Measurement

FORMAT = 1
DEFAULT_ABS = 1e-6
DEFAULT_REL = 0.05


@dataclass(frozen=True)
class ToleranceBand:
    """|measured - baseline| <= abs + rel * |baseline|."""

    abs: float = DEFAULT_ABS
    rel: float = DEFAULT_REL

    def admits(self, measured: float, recorded: float) -> bool:
        if math.isnan(recorded) and math.isnan(measured):
            return True
        return abs(measured - recorded) <= self.abs + self.rel * abs(recorded)

    def describe(self) -> str:
        return f"±({self.abs:g} + {self.rel:g}·|baseline|)"


def baseline_path(root: Path, model_key: str, spec_name: str) -> Path:
    """``root/<model key>/<spec name>.json``, refused unless it resolves inside ``root``."""
    return confined(root, safe_component(model_key, "model"), f"{safe_component(spec_name, 'spec')}.json")


def snapshot(measurement: Measurement) -> dict[str, object]:
    """Every metric of one measurement as plain JSON (per-layer keys as strings, NaN as null)."""
    metrics = {}
    for name, metric in measurement.metrics.items():
        metrics[name] = {
            "aggregate": _plain(metric.aggregate),
            "per_layer": {str(layer): _plain(value) for layer, value in sorted(metric.per_layer.items())},
        }
    return {"property": measurement.property, "valid": measurement.valid, "reason": measurement.reason, "metrics": metrics}


def _plain(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.9g}")


def document(model: str, spec_name: str, entries: Mapping[str, dict[str, object]]) -> dict[str, object]:
    return {"format": FORMAT, "model": model, "spec": spec_name, "geomcheck": __version__, "checks": dict(sorted(entries.items()))}


def write_atomic(path: Path, data: Mapping[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True, allow_nan=False)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read(path: Path) -> dict[str, object]:
    from geomcheck.errors import GeomcheckError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GeomcheckError(f"{path}:{exc.lineno}:{exc.colno}: baseline is not valid JSON ({exc.msg}); re-create it with --geom-update") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("checks"), dict):
        raise GeomcheckError(f"{path}: not a geomcheck baseline of format {FORMAT}; re-create it with --geom-update")
    return data


def drift(recorded: Mapping[str, object], measurement: Measurement, band: ToleranceBand) -> list[str]:
    """Lines describing every recorded value the new measurement moved outside the band."""
    lines: list[str] = []
    recorded_metrics = recorded.get("metrics", {})
    if not isinstance(recorded_metrics, dict):
        return ["the baseline entry has no metrics; re-create it with --geom-update"]
    if bool(recorded.get("valid")) != measurement.valid:
        lines.append(f"validity changed: baseline valid={recorded.get('valid')}, now valid={measurement.valid} ({measurement.reason})")
    for name, old in sorted(recorded_metrics.items()):
        metric = measurement.metrics.get(name)
        if metric is None:
            lines.append(f"{name}: recorded in the baseline but not measured now")
            continue
        pairs: Iterable[tuple[str, float | None, float | None]] = [("aggregate", old.get("aggregate"), metric.aggregate)]
        pairs = [*pairs, *((f"block {k}", v, metric.per_layer.get(int(k))) for k, v in old.get("per_layer", {}).items())]
        for where, then, now in pairs:
            if then is None and (now is None or not math.isfinite(now)):
                continue
            if then is None or now is None or not band.admits(float(now), float(then)):
                lines.append(f"{name} {where}: {_show(now)} vs baseline {_show(then)} (tolerance {band.describe()})")
    return lines


def _show(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
