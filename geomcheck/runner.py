"""Checks a model against spec checks: load once, capture once per input set, measure, evaluate.

Both the pytest plugin and ``geomcheck run`` drive a GeomSession, so a check means the same thing
in either place and the captured activations are shared by every check that uses the same inputs.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from geomcheck import properties
from geomcheck.capture.hooks import CapturePlan, capture, mapping_check_pending
from geomcheck.capture.inputs import (
    DEFAULT_TOKEN_BUDGET,
    InputSpec,
    build_batch,
    check_budget,
)
from geomcheck.errors import GeomcheckError
from geomcheck.exit_codes import ExitCode
from geomcheck.gate.book import BaselineBook, BaselineOptions
from geomcheck.gate.results import CaptureRecord, CheckResult
from geomcheck.gate.uncertainty import covered as errors_cover
from geomcheck.gate.uncertainty import with_uncertainty
from geomcheck.models.fingerprint import weights_fingerprint
from geomcheck.models.loader import LoadedModel, LoadOptions, load, resolve
from geomcheck.options import ci_environment
from geomcheck.progress import Opener, Progress, block_progress, stderr_opener
from geomcheck.properties.base import Measurement, PropertyDef, Wanted
from geomcheck.properties.threads import one_blas_thread
from geomcheck.spec.expect import Outcome, errored, evaluate
from geomcheck.spec.layers import resolve_layers
from geomcheck.spec.schema import Check, Spec


def out_of_memory(ref: str, loaded: LoadedModel, batch, batch_size: int) -> GeomcheckError:
    """The device ran out of memory mid-capture: say what was asked and which option helps, in one line."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    device = loaded.input_device
    smaller = max(1, batch_size // 2)
    return GeomcheckError(
        f"{device} ran out of memory capturing {ref} ({batch.n_sequences} sequences x {batch.length} tokens, {batch_size} per "
        f"forward pass). Remedy: a smaller batch (geomcheck run --batch-size {smaller}, pytest --geom-batch-size={smaller}), "
        "half the weights' memory (--dtype bfloat16 / --geom-dtype=bfloat16), or the model spread over every device "
        "(--device auto / --geom-device=auto)")


def capture_plan(props: Iterable[PropertyDef], seed: int) -> CapturePlan:
    """What capture keeps for these properties: norms and maxima everywhere, samples and per-position
    means only at the sites some property reads (``PropertyDef.needs``). On an accelerator the per-group
    position sums are most of what a capture moves to the host; the main job's specs read none."""
    props = list(props)
    samples = tuple(sorted({pattern for prop in props for pattern in prop.needs.samples}))
    means = tuple(sorted({pattern for prop in props for pattern in prop.needs.position_means}))
    return CapturePlan(position_means=means, sampled=samples, seed=seed, progress=False)


@dataclass(frozen=True)
class SharedMeasurement:
    """One property's measurement for one (model, inputs, params, layers), shared by every check that reads it."""

    plain: Measurement
    with_errors: Measurement  # the same values, with jackknife standard errors for ``covered``
    covered: Wanted  # the metrics (and whether per block) the errors cover; more are added when a later check needs them


@dataclass
class GeomSession:
    """Caches loaded models and captures for the life of one pytest session or CLI run."""

    load_options: LoadOptions = field(default_factory=LoadOptions)
    token_budget: int = DEFAULT_TOKEN_BUDGET
    baselines: BaselineOptions | None = None
    batch_size: int = 8  # sequences per forward pass while capturing; lower it when the device runs out of memory
    input_draw: int = 0  # which disjoint draw of every input set to take (capture.inputs.InputSpec.draw)
    _models: dict[str, LoadedModel] = field(default_factory=dict)
    _measurements: dict[tuple, SharedMeasurement] = field(default_factory=dict)
    _fingerprints: dict[str, str] = field(default_factory=dict)
    _captures: dict[tuple[str, InputSpec], CaptureRecord] = field(default_factory=dict)
    # The properties each input set's capture must serve (``plan``); a capture keeps only what they read.
    _planned: dict[InputSpec, set[str]] = field(default_factory=dict)
    _served: dict[tuple[str, InputSpec], tuple[PropertyDef, ...]] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    shared_seconds: float = 0.0  # loading and capturing, paid once and shared, so never billed to one check
    progress_opener: Opener = stderr_opener  # where capture progress goes; pytest's suspends its output capture
    excluded: dict[tuple[str, str], str] = field(default_factory=dict)  # (spec, model) -> why its applies_to left the model out
    book: BaselineBook | None = field(init=False, default=None)  # the baseline bookkeeping (gate.book), with baselines

    def __post_init__(self) -> None:
        self.book = BaselineBook(self.baselines) if self.baselines is not None else None

    def add_model(self, ref: str, loaded: LoadedModel) -> None:
        """Use an already loaded (e.g. deliberately damaged) model under the name ``ref``."""
        self._models[ref] = loaded
        self._captures = {key: value for key, value in self._captures.items() if key[0] != ref}
        self._measurements = {key: value for key, value in self._measurements.items() if key[0] != ref}

    def model(self, ref: str) -> LoadedModel:
        if ref not in self._models:
            started = time.perf_counter()
            self._models[ref] = load(resolve(ref), self.load_options)
            self.shared_seconds += time.perf_counter() - started
        return self._models[ref]

    def inputs_for(self, spec: Spec, check: Check) -> InputSpec:
        effective = check.effective_inputs(spec)
        if self.load_options.seed:
            effective = replace(effective, seed=effective.seed + self.load_options.seed)
        return replace(effective, draw=self.input_draw) if self.input_draw else effective

    def plan(self, checks: Iterable[tuple[Spec, Check]]) -> None:
        """Say which checks will run, so each input set's capture keeps only what their properties read.

        Without a plan (or for a check outside it) a capture serves every registered property, as a
        caller measuring ad hoc expects; a planned capture that a later check needs more from is taken again.
        """
        for spec, check in checks:
            self._planned.setdefault(self.inputs_for(spec, check), set()).add(check.property)

    def capture(self, ref: str, input_spec: InputSpec, for_property: PropertyDef | None = None) -> CaptureRecord:
        key = (ref, input_spec)
        served = self._served.get(key)
        if served is not None and for_property is not None and not capture_plan(served, 0).covers(for_property.needs.samples, for_property.needs.position_means):
            del self._captures[key]  # taken for other properties; this one reads more
            self._planned.setdefault(input_spec, set()).update({prop.name for prop in served} | {for_property.name})
        if key not in self._captures:
            check_budget(input_spec, context_length=None, budget=self.token_budget)
            loaded = self.model(ref)
            check_budget(input_spec, context_length=loaded.context_length, budget=self.token_budget)
            batch = build_batch(
                input_spec,
                loaded.tokenizer,
                bos_token_id=loaded.bos_token_id,
                default_bos=loaded.default_bos,
                vocab_size=int(loaded.model.config.vocab_size),
            )
            started = time.perf_counter()
            print(f"geomcheck: capturing {ref} on {batch.description}", file=sys.stderr)
            serving = tuple(properties.get(name) for name in sorted(self._planned.get(input_spec) or properties.REGISTRY))
            plan = replace(capture_plan(serving, input_spec.seed), batch_size=self.batch_size)
            progress = Progress(f"geomcheck: capturing {ref}", self.progress_opener)
            # The first capture of a model in a process starts with one short checking pass: counted as a batch.
            passes = -(-batch.n_sequences // plan.batch_size) + int(mapping_check_pending(loaded, plan))
            try:
                with block_progress(loaded.table.block_modules(loaded.base), passes, progress):
                    acts = capture(loaded, batch, plan)
            except torch.OutOfMemoryError:
                raise out_of_memory(ref, loaded, batch, plan.batch_size) from None
            progress.finish("captured")
            self._captures[key] = CaptureRecord(acts, batch, time.perf_counter() - started)
            self._served[key] = serving
            self.shared_seconds += self._captures[key].seconds
        return self._captures[key]

    def captures(self) -> dict[tuple[str, InputSpec], CaptureRecord]:
        return dict(self._captures)

    def models(self) -> dict[str, LoadedModel]:
        return dict(self._models)

    def run_check(self, spec: Spec, check: Check, ref: str) -> CheckResult:
        """Measure and evaluate; a check that cannot apply to this model comes back skipped."""
        started, shared = time.perf_counter(), self.shared_seconds
        outcome, measurement = self._evaluate(spec, check, ref)
        # The check's own time: the model load and capture it may have triggered are shown once, per input set.
        seconds = max(0.0, time.perf_counter() - started - (self.shared_seconds - shared))
        result = CheckResult(spec, check, ref, outcome, measurement, seconds)
        self.results.append(result)
        return result

    def _evaluate(self, spec: Spec, check: Check, ref: str) -> tuple[Outcome, Measurement | None]:
        loaded = self.model(ref)
        if not spec.matches(ref, loaded.table.family, loaded.model.config):
            why = spec.applies_to.mismatch(ref, loaded.table.family, loaded.model.config) if spec.applies_to else ""
            self.excluded[(spec.display_path, ref)] = why
            reason = f"{spec.display_path} is not meant for {ref}: {why}; see its applies_to"
            return Outcome.skip(reason, check=check, model=ref), None
        try:
            layers = resolve_layers(check.layers, loaded.n_blocks)
        except ValueError as exc:
            return errored(check, model=ref, reason=f"{check.layers_location}: layers: {exc}"), None
        input_spec = self.inputs_for(spec, check)
        prop = properties.get(check.property)
        record = self.capture(ref, input_spec, prop)
        reason = prop.applies(record.activations)
        if reason:
            return Outcome.skip(reason, check=check, model=ref), None
        # Two checks on different metrics of one measurement (probe accuracy and Fisher ratio) share it,
        # and its standard errors cover the metrics of every check that reads it.
        # Checks of another spec may share the measurement but read other metrics: replicates for those
        # metrics are added then, so no check is gated without its own error.
        key = (ref, input_spec, check.property, check.params.model_dump_json(), layers)
        wanted = self._wanted(spec, check, input_spec)
        with one_blas_thread():
            measurement = self._shared_measurement(key, prop, record.activations, check.params, layers, wanted).with_errors
        outcome = evaluate(check, measurement, model=ref, spec_path=spec.display_path)
        if self.baselines is not None:
            outcome = self._against_baseline(spec, check, ref, measurement, outcome)
        return outcome, measurement

    def layer_problems(self, specs: Sequence[Spec], refs: Sequence[str]) -> list[str]:
        """Every check whose ``layers:`` do not fit a model it applies to, found before anything is captured.

        A range beyond the model's depth is a mistake in the spec, not a property the model lacks: it is an
        error at the ``layers:`` line, reported before minutes of capture, never a failed check.
        """
        problems = []
        for ref in refs:
            try:
                loaded = self.model(ref)
            except GeomcheckError:
                continue  # the first check of this model reports it, as it reports any load failure
            for spec in specs:
                if not spec.matches(ref, loaded.table.family, loaded.model.config):
                    continue
                for check in spec.checks:
                    try:
                        resolve_layers(check.layers, loaded.n_blocks)
                    except ValueError as exc:
                        problems.append(f"{check.layers_location}: layers: {exc} (check {check.id!r} on {ref})")
        return problems

    def _shared_measurement(self, key: tuple, prop, acts, params, layers: tuple[int, ...], wanted: Wanted) -> SharedMeasurement:
        """The measurement every check with this key reads, with standard errors for the metrics they gate."""
        shared = self._measurements.get(key)
        plain = shared.plain if shared is not None else prop.measure(acts, params, layers)
        measurement, covered = (shared.with_errors, shared.covered) if shared is not None else (None, None)
        if covered is None:
            measurement = with_uncertainty(prop, acts, params, layers, plain, wanted)
            covered = errors_cover(measurement, wanted)
        elif not (wanted.metrics <= covered.metrics and (covered.per_layer or not wanted.per_layer)):
            # Replicates for the missing metrics only; the errors already attached are kept as they are.
            # Per-block errors newly needed: every covered metric gets them, since ``covered`` will say so.
            upgrade = wanted.per_layer and not covered.per_layer
            missing = covered.metrics | wanted.metrics if upgrade else wanted.metrics - covered.metrics
            extra = with_uncertainty(prop, acts, params, layers, plain, Wanted(missing, wanted.per_layer))
            measurement = replace(measurement, metrics=MappingProxyType({
                name: extra.metrics[name] if name in missing else metric for name, metric in measurement.metrics.items()}))
            covered = Wanted(covered.metrics | wanted.metrics, covered.per_layer or wanted.per_layer)
        self._measurements[key] = SharedMeasurement(plain, measurement, covered)
        return self._measurements[key]

    def _wanted(self, spec: Spec, check: Check, input_spec: InputSpec) -> Wanted:
        """The metrics (and whether per layer) that the checks sharing this measurement need errors for."""
        sharing = [
            other for other in spec.checks
            if (other.property, other.params, other.layers) == (check.property, check.params, check.layers)
            and self.inputs_for(spec, other) == input_spec
        ]
        return Wanted(frozenset(other.metric for other in sharing), per_layer=any(other.gates_per_layer for other in sharing))

    def baseline_file(self, spec: Spec, ref: str) -> Path:
        assert self.book is not None
        return self.book.path(spec, self.model(ref).ref.key)

    def _against_baseline(self, spec: Spec, check: Check, ref: str, measurement: Measurement, outcome: Outcome) -> Outcome:
        assert self.book is not None
        return self.book.judge(spec, check, ref, self.model(ref).ref.key, measurement, outcome,
                               lambda: (self.inputs_fingerprint(spec, check, ref), self._model_fingerprint(ref)))

    def inputs_fingerprint(self, spec: Spec, check: Check, ref: str) -> dict[str, object]:
        input_spec = self.inputs_for(spec, check)
        record = self.capture(ref, input_spec)
        source = input_spec.source
        return {
            "mode": input_spec.mode,
            "source": Path(source).name if input_spec.mode == "text" and source else source,
            "sequences": int(record.batch.ids.shape[0]),
            "tokens": int(record.batch.ids.shape[1]),
            "seed": input_spec.seed,
            "bos": bool(record.batch.bos),
            "token_ids_sha256": hashlib.sha256(np.ascontiguousarray(record.batch.ids).tobytes()).hexdigest()[:16],
            "groups": record.activations.n_groups,
        }

    def _model_fingerprint(self, ref: str) -> dict[str, object]:
        loaded = self.model(ref)
        if ref not in self._fingerprints:
            self._fingerprints[ref] = weights_fingerprint(loaded.model)
        return {"reference": ref, "key": loaded.ref.key, "weights": self._fingerprints[ref], "dtype": str(next(loaded.model.parameters()).dtype)}

    @property
    def used_baselines(self) -> dict[tuple[str, Path], Path | None]:
        return self.book.used if self.book is not None else {}

    def finish(self) -> list[Path]:
        return self.book.finish() if self.book is not None else []

    def not_recorded(self) -> dict[Path, list[str]]:
        return self.book.not_recorded() if self.book is not None else {}

    def baseline_summary(self) -> list[str]:
        return self.book.summary() if self.book is not None else []


@dataclass(frozen=True)
class RunOptions:
    models: tuple[str, ...]
    specs: tuple[str, ...] = ("specs",)
    report: str | None = None
    write_report: bool = True
    umap: bool = False
    input_text: bool = False  # show text/dataset input tokens in the report (report.html.shown_tokens)
    load: LoadOptions = field(default_factory=LoadOptions)
    token_budget: int | None = None
    baselines: BaselineOptions | None = None
    batch_size: int = 8
    strict: bool = False  # --strict: a missing baseline or a model whose every check skipped fails the run (as under CI=true)


def applies_to_nothing(session: GeomSession, specs: Sequence[Spec], named: Sequence[str]) -> list[str]:
    """Specs the user named as files whose applies_to excluded every model run: a gate that silently did nothing.

    A folder of specs (``specs/``) holds specs for other families by design; a file named on its own is
    a statement that it should run.
    """
    files = {Path(p).resolve() for p in named if Path(p).is_file()}
    lines = []
    for spec in specs:
        if spec.path is None or Path(spec.path).resolve() not in files:
            continue
        refs = {r.model for r in session.results if r.spec is spec}
        why = {ref: session.excluded.get((spec.display_path, ref)) for ref in refs}
        if refs and all(why.values()):
            lines.append(f"{spec.display_path} applies to none of the models run, so none of its {len(spec.checks)} checks ran ("
                         + "; ".join(f"{ref}: {reason}" for ref, reason in sorted(why.items())) + ")")
    return lines


def all_skipped(session: GeomSession) -> list[str]:
    """Models for which every check of every spec was skipped: the run measured nothing about them."""
    statuses: dict[str, set[str]] = {}
    for result in session.results:
        statuses.setdefault(result.model, set()).add(result.outcome.status)
    return [model for model, seen in statuses.items() if seen == {"skipped"}]


def run_cli(options: RunOptions) -> int:
    """``geomcheck run``: exit 0 all passed or skipped, 1 a check failed, 3 a check or the run errored."""
    from geomcheck import frontend

    specs = frontend.read_specs("run", options.specs)
    session = GeomSession(options.load, options.token_budget or DEFAULT_TOKEN_BUDGET, options.baselines, batch_size=options.batch_size)
    session.plan((spec, check) for spec in specs for check in spec.checks)
    problems = session.layer_problems(specs, options.models)
    for problem in problems:
        print(f"geomcheck run: error: {problem}", file=sys.stderr)
    if problems:
        print("geomcheck run: nothing was captured; fix the ranges (docs/specs.md, Layers)", file=sys.stderr)
        return ExitCode.ERROR
    failed = errors = False
    for ref in options.models:
        for spec in specs:
            for check in spec.checks:
                try:
                    result = session.run_check(spec, check, ref)
                except GeomcheckError as exc:
                    print(f"ERROR {spec.display_path}::{check.id}[{ref}]: {exc}", file=sys.stderr)
                    return ExitCode.ERROR
                outcome = result.outcome
                print(f"{outcome.status.upper():<7} {spec.display_path}::{check.id}[{ref}]  {outcome.headline}")
                for line in outcome.details if outcome.status == "failed" else ():
                    print(f"        {line}")
                failed |= outcome.status == "failed"
                errors |= outcome.status == "error"
    for line in session.baseline_summary():
        print(line)
    unused = applies_to_nothing(session, specs, options.specs)
    for line in unused:
        print(f"geomcheck run: warning: {line}", file=sys.stderr)
    strict = options.strict or ci_environment()
    if unused and strict:
        print("geomcheck run: a spec named on the command line ran no check under --strict / CI=true; fix its applies_to "
              "or leave it out", file=sys.stderr)
        errors = True
    for model in all_skipped(session):
        print(f"geomcheck run: {'error' if strict else 'warning'}: every check was skipped for {model}, so nothing about it "
              "was measured" + (" (--strict / CI=true)" if strict else "; --strict (or CI=true) makes this fail"), file=sys.stderr)
        errors |= strict
    if options.write_report:
        from geomcheck.report import write_reports

        failure = frontend.write_page("run", lambda: write_reports(session, options.report, umap=options.umap, input_text=options.input_text),
                                      options.report)
        if failure is not None:
            return failure
    code = ExitCode.ERROR if errors else ExitCode.FAILED if failed else ExitCode.OK
    print(verdict_line(session, code))
    return code


def verdict_line(session: GeomSession, code: ExitCode) -> str:
    """The run in one line, last: counts by status and what the exit code means."""
    counts: dict[str, int] = {}
    for result in session.results:
        counts[result.outcome.status] = counts.get(result.outcome.status, 0) + 1
    shown = ", ".join(f"{counts[status]} {status}" for status in ("passed", "failed", "error", "skipped") if counts.get(status))
    meaning = {ExitCode.OK: "OK", ExitCode.FAILED: "FAILED (a check failed)", ExitCode.ERROR: "ERROR (the gate could not run as asked)"}
    return f"geomcheck run: {shown or 'no checks'}; {meaning.get(code, code.name)} (exit {int(code)})"
