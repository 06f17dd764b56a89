"""What a session produced, as read by the report and the comparison: results, captures, and a view of the session.

These types sit below the runner and the report so that neither imports the other: the runner
produces them, the report renders them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from geomcheck.capture.activations import Activations
from geomcheck.capture.inputs import InputSpec, TokenBatch
from geomcheck.models.loader import LoadedModel
from geomcheck.properties.base import Measurement
from geomcheck.spec.expect import Outcome
from geomcheck.spec.schema import Check, Spec


@dataclass(frozen=True)
class CheckResult:
    """One check on one model: what was measured and how it compared."""

    spec: Spec
    check: Check
    model: str
    outcome: Outcome
    measurement: Measurement | None
    seconds: float


@dataclass(frozen=True)
class CaptureRecord:
    """One capture of one model on one input set, shared by every check that reads those inputs."""

    activations: Activations
    batch: TokenBatch
    seconds: float


class SessionView(Protocol):
    """The part of a GeomSession that reports read."""

    results: list[CheckResult]
    started: float
    used_baselines: dict[tuple[str, Path], Path | None]

    def models(self) -> dict[str, LoadedModel]: ...

    def captures(self) -> dict[tuple[str, InputSpec], CaptureRecord]: ...

    def inputs_for(self, spec: Spec, check: Check) -> InputSpec: ...
