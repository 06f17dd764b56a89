"""The baseline bookkeeping of one run: which file each check is judged against, what --update records.

A session measures; this book decides what a measurement means against a recorded baseline and keeps
what a run must write or report at its end. Front ends say how their users record a baseline
(``BaselineOptions.update_command``), so the remedy a user reads is in the command they ran.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from geomcheck import properties
from geomcheck.gate import baseline
from geomcheck.properties.base import Measurement
from geomcheck.spec.expect import Outcome
from geomcheck.spec.schema import Check, Spec

PYTEST_UPDATE = "pytest --geom-model={ref} --geom-spec={spec} --geom-update"
CLI_UPDATE = "geomcheck run --model={ref} --spec={spec} --update"


@dataclass(frozen=True)
class BaselineOptions:
    """Where baselines live and what to do with them. ``ci`` turns a missing baseline into a failure."""

    root: Path = Path("baselines")
    update: bool = False
    force: bool = False  # with update: record checks whose fixed expectations fail too
    ci: bool = field(default_factory=lambda: os.environ.get("CI", "").lower() in ("1", "true", "yes"))  # or --strict
    update_command: str = PYTEST_UPDATE  # how this front end's users record one ({ref}, {spec})


Fingerprints = Callable[[], tuple[Mapping[str, object], Mapping[str, object]]]  # (inputs, model), computed on demand


@dataclass
class BaselineBook:
    options: BaselineOptions
    used: dict[tuple[str, Path], Path | None] = field(default_factory=dict)  # (model, spec path) -> file compared, or None
    searched: dict[tuple[str, Path], Path] = field(default_factory=dict)  # (model, spec path) -> the file looked for
    tested: dict[tuple[str, Path], int] = field(default_factory=dict)  # (model, spec path) -> gated values the drift test saw
    profiled: dict[tuple[str, Path], int] = field(default_factory=dict)  # (model, spec path) -> block values the paired profile test saw
    _recorded: dict[Path, dict] = field(default_factory=dict)
    _pending: dict[Path, tuple[str, str, dict[str, dict]]] = field(default_factory=dict)
    _not_recorded: dict[Path, list[str]] = field(default_factory=dict)

    def path(self, spec: Spec, model_key: str) -> Path:
        return baseline.baseline_path(self.options.root, model_key, spec.name)

    def judge(self, spec: Spec, check: Check, ref: str, model_key: str, measurement: Measurement, outcome: Outcome,
              fingerprints: Fingerprints) -> Outcome:
        """Queue the measurement for recording (with --update), else test it against the recorded distribution."""
        options = self.options
        path = self.path(spec, model_key)
        if options.update:
            if outcome.status == "passed" or options.force:
                inputs, model = fingerprints()
                self._pending.setdefault(path, (ref, spec.name, {}))[2][check.id] = baseline.entry(check, measurement, inputs, model)
            else:
                self._not_recorded.setdefault(path, []).append(check.id)
            return outcome
        if path not in self._recorded:
            self._recorded[path] = baseline.read(path) if path.is_file() else {}
        recorded = self._recorded[path].get("checks", {}).get(check.id) if self._recorded[path] else None
        self.used[(ref, spec.path)] = path if self._recorded[path] else None
        self.searched[(ref, spec.path)] = path
        if recorded is None:
            missing = f"no baseline for check {check.id!r} in {path}"
            remedy = f"record one with: {options.update_command.format(ref=ref, spec=spec.display_path)}, and commit it"
            if options.ci:
                return replace(outcome, status="failed", headline=f"{check.property}[{ref}]: {missing} ({check.location})", details=(remedy, *outcome.details))
            print(f"geomcheck: warning: {missing} (in CI this fails); {remedy}", file=sys.stderr)
            return outcome
        try:
            verdict = baseline.against(check, properties.get(check.property), recorded, measurement, fingerprints()[0])
        except baseline.BaselineError as exc:  # an edited or damaged entry: the gate cannot run, and says so
            return replace(outcome, status="error", headline=f"{check.property}[{ref}]: {path}: {exc} ({check.location})",
                           details=(str(exc), *outcome.details))
        key = (ref, spec.path)
        self.tested[key] = self.tested.get(key, 0) + verdict.tested
        self.profiled[key] = self.profiled.get(key, 0) + verdict.profile_tested
        moved = verdict.alarms
        if not moved:
            return outcome
        what = f"drifted from its baseline in {len(moved)} of {verdict.tested + verdict.profile_tested} value(s)"
        headline = f"{check.property}[{ref}] {what} ({check.location})"
        if outcome.status == "failed":
            headline = outcome.headline + f"; also {what}"
        gate = verdict.result.settings.describe(paired=verdict.paired) if verdict.result is not None else ""
        gate += "; paired: the baseline's own inputs" if verdict.paired else "; unpaired: other inputs than the baseline's"
        details = (*outcome.details, f"baseline: {path} ({gate})", *moved[:12], *(["..."] if len(moved) > 12 else []))
        return replace(outcome, status="failed", headline=headline, details=details)

    def finish(self) -> list[Path]:
        """Write the baselines this run recorded; only with --update (a missing baseline is reported, never written)."""
        if not self.options.update:
            return []
        written = []
        for path, (ref, spec_name, entries) in self._pending.items():
            baseline.merge_and_write(path, ref, spec_name, entries)
            written.append(path)
        self._pending.clear()
        return written

    def missing(self) -> list[tuple[str, Path]]:
        """(model, baseline file looked for) of every spec that ran without a recorded baseline."""
        return [(key[0], self.searched[key]) for key, path in self.used.items() if path is None]

    def not_recorded(self) -> dict[Path, list[str]]:
        """Checks --update left out because their fixed expectations failed (record them with --force-update)."""
        return dict(self._not_recorded)

    def summary(self) -> list[str]:
        """Write what --update recorded, and say which baseline each (model, spec) was compared with."""
        lines = [f"baseline written: {path}" for path in self.finish()]
        for path, ids in self._not_recorded.items():
            lines.append(f"baseline NOT recorded for {', '.join(ids)} in {path}: the check fails its fixed expectation "
                         "(record it anyway with --force-update)")
        for (ref, spec_path), path in self.used.items():
            if path is None:
                looked = self.searched.get((ref, spec_path))
                where = f"; looked for {_absolute(looked)}" if looked is not None else ""
                lines.append(f"baseline compared for {ref} / {spec_path.name}: none (no baseline file{where})")
            else:
                profiled = self.profiled.get((ref, spec_path), 0)
                also = f", {profiled} block values held to their floors (paired profile)" if profiled else ""
                lines.append(f"baseline compared for {ref} / {spec_path.name}: {path} "
                             f"({self.tested.get((ref, spec_path), 0)} gated values tested{also})")
        return lines


def _absolute(path: Path) -> str:
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return str(path)
