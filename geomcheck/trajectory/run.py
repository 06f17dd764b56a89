"""``geomcheck trajectory``: measure every checkpoint of a run on identical inputs, one model in memory at a time.

Each checkpoint gets a fresh GeomSession (so the previous model is released before the next loads)
with the same specs, seed and budget, hence the same token ids. Results are cached next to the
report; a rerun measures only what is missing. Under ``torchrun``/``accelerate launch`` (WORLD_SIZE
> 1) each rank measures every WORLD_SIZE-th missing checkpoint into the shared cache, the ranks meet
at a barrier, and rank 0 writes the report.
"""

from __future__ import annotations

import gc
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from geomcheck.capture.inputs import DEFAULT_TOKEN_BUDGET
from geomcheck.errors import GeomcheckError
from geomcheck.exit_codes import REGRESSED, ExitCode
from geomcheck.models.loader import LoadOptions
from geomcheck.paths import refuse_linked_default, safe_component
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import Spec
from geomcheck.trajectory import cache
from geomcheck.trajectory.discover import Checkpoint, NoCheckpointsError, discover
from geomcheck.trajectory.records import CheckpointRecord, Unusable, check_point, history

EXIT_OK, EXIT_REGRESSED, EXIT_ERROR = ExitCode.OK, REGRESSED, ExitCode.ERROR
DEFAULT_DIRECTORY = Path("reports")


@dataclass(frozen=True)
class TrajectoryOptions:
    sources: tuple[str, ...]
    specs: tuple[str, ...] = ("specs",)
    report: str | None = None
    cache: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    token_budget: int | None = None
    remeasure: bool = False


@dataclass(frozen=True)
class Trajectory:
    """One spec over the checkpoints: the measured records in step order and the checkpoints that could not be used."""

    spec: Spec
    records: tuple[CheckpointRecord, ...]
    unusable: tuple[Unusable, ...]
    cached: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[str]:
        return [row.check_id for row in history(self.spec, self.records) if row.regressed]


def measure(checkpoint: Checkpoint, spec: Spec, options: LoadOptions, token_budget: int, key: str) -> CheckpointRecord:
    """Load ``checkpoint``, run every check of ``spec``, and release the model; raises GeomcheckError when it cannot be used."""
    started = time.perf_counter()
    session = GeomSession(options, token_budget, baselines=None)
    results = [session.run_check(spec, check, checkpoint.reference) for check in spec.checks]
    loaded = session.models().get(checkpoint.reference)
    model = {key_: str(value) for key_, value in loaded.config_summary().items()} if loaded is not None else {}
    inputs = tuple({"description": record.batch.description, "shape": list(record.batch.ids.shape),
                    "token_ids_sha256": hashlib.sha256(np.ascontiguousarray(record.batch.ids).tobytes()).hexdigest()[:16]}
                   for record in session.captures().values())
    record = CheckpointRecord(checkpoint.reference, checkpoint.label, checkpoint.step, spec.name, key,
                              {result.check.id: check_point(result) for result in results}, model, inputs,
                              time.perf_counter() - started)
    del session, results, loaded
    gc.collect()
    return record


def default_report_path(sources: Sequence[str]) -> Path:
    """``reports/trajectory-<name of the first source>.html``."""
    first = Path(sources[0].rstrip("/\\")).name if sources else "run"
    return DEFAULT_DIRECTORY / f"trajectory-{safe_component(first or 'run', 'run')}.html"


def report_path(options: TrajectoryOptions) -> Path:
    if options.report is None:
        return default_report_path(options.sources)
    path = Path(options.report)
    if path.is_dir() or options.report.endswith(("/", os.sep)):
        return path / default_report_path(options.sources).name
    return path


def cache_folder(options: TrajectoryOptions) -> Path:
    """``<report stem>.cache/`` beside the report, unless --cache names a folder."""
    if options.cache:
        return Path(options.cache)
    path = report_path(options)
    if options.report is None:
        refuse_linked_default(path.parent, "--report or --cache")
    folder = path.with_name(f"{path.stem}.cache")
    if folder.is_symlink():  # named by geomcheck, not by the user: never followed
        refuse_linked_default(folder, "--cache")
    return folder


def collect(checkpoints: Sequence[Checkpoint], spec: Spec, options: TrajectoryOptions, *, rank: int = 0, world: int = 1,
            measure_missing: bool = True) -> Trajectory:
    """Read every checkpoint's record from the cache and (with ``measure_missing``) measure this rank's missing ones."""
    folder = cache_folder(options)
    budget = options.token_budget or DEFAULT_TOKEN_BUDGET
    records, unusable, cached = [], [], []
    missing = 0
    for checkpoint in checkpoints:
        try:
            key = cache.cache_key(checkpoint.reference, spec, dtype=options.load.dtype, seed=options.load.seed, token_budget=budget)
        except OSError as exc:
            unusable.append(Unusable(checkpoint.reference, checkpoint.label, checkpoint.step, f"cannot read its files ({exc})"))
            continue
        path = cache.record_path(folder, checkpoint.label, spec, key)
        record = None if options.remeasure and measure_missing else cache.read(path)
        if record is not None:
            records.append(replace(record, label=checkpoint.label, step=checkpoint.step))
            cached.append(checkpoint.label)
            continue
        mine = missing % world == rank
        missing += 1
        if not (measure_missing and mine):
            continue
        print(f"geomcheck trajectory: measuring {checkpoint.label} (step {_step_text(checkpoint.step)}) against {spec.display_path}",
              file=sys.stderr)
        try:
            record = measure(checkpoint, spec, options.load, budget, key)
        except GeomcheckError as exc:
            unusable.append(Unusable(checkpoint.reference, checkpoint.label, checkpoint.step, str(exc)))
            print(f"geomcheck trajectory: cannot measure {checkpoint.label}: {exc}", file=sys.stderr)
            continue
        cache.write(path, record)
        records.append(record)
    return Trajectory(spec, tuple(records), tuple(unusable), tuple(cached))


def _step_text(step: int | None) -> str:
    return "unknown" if step is None else str(step)


def _distributed() -> tuple[int, int]:
    """(rank, world size) as torchrun and accelerate launch set them; (0, 1) otherwise."""
    try:
        return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 0, 1


def _barrier(world: int) -> None:
    if world <= 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    dist.barrier()


def print_summary(trajectory: Trajectory) -> None:
    spec, records = trajectory.spec, trajectory.records
    labels = [record.label for record in records]
    width = max([len(check.id) for check in spec.checks] + [5])
    print(f"\n{spec.display_path}: {len(records)} checkpoint(s) measured"
          f"{f', {len(trajectory.cached)} read from the cache' if trajectory.cached else ''}")
    print(f"{'check':<{width}}  {'first passes':<22} {'last fails':<22} latest  over steps")
    steps = " ".join(_step_text(record.step) for record in records)
    for row in history(spec, records):
        marks = "".join({"passed": "+", "failed": "x", "skipped": "-", "error": "E"}.get(s, "?") for s in row.statuses)
        latest = (row.latest or "—") + (" REGRESSED" if row.regressed else "")
        print(f"{row.check_id:<{width}}  {row.first_pass or 'never':<22} {row.last_fail or 'never':<22} {latest:<7} {marks}")
    if labels:
        print(f"steps: {steps}  (+ passed, x failed, - skipped, E error)")
    for item in trajectory.unusable:
        print(f"UNUSABLE {item.label} (step {_step_text(item.step)}): {item.reason}")


def run_trajectory(options: TrajectoryOptions) -> int:
    """Exit 0: nothing regressed; 1: the latest checkpoint fails a check an earlier one passed; 3: a checkpoint or
    spec could not be used at all (the other checkpoints are still measured and reported)."""
    from geomcheck import frontend

    rank, world = _distributed()
    try:
        specs = frontend.read_specs("trajectory", options.specs)
        checkpoints = discover(options.sources)
    except NoCheckpointsError as exc:
        return frontend.error("trajectory", f"nothing to measure in {exc.where}: {exc.reason}")
    except GeomcheckError as exc:
        return frontend.error("trajectory", str(exc))
    print(f"geomcheck trajectory: {len(checkpoints)} checkpoint(s): "
          + ", ".join(f"{c.label} (step {_step_text(c.step)})" for c in checkpoints), file=sys.stderr)
    trajectories = [collect(checkpoints, spec, options, rank=rank, world=world) for spec in specs]
    if world > 1:
        _barrier(world)
        if rank != 0:
            return EXIT_OK
        # rank 0 reads what the other ranks measured; a checkpoint no rank could measure is reported from its own try
        failed = {u.reference: u for t in trajectories for u in t.unusable}
        trajectories = [_with_failures(collect(checkpoints, spec, options, measure_missing=False), checkpoints, failed)
                        for spec in specs]
    from geomcheck.trajectory.html import write_trajectory_report

    path = report_path(options)
    for trajectory in trajectories:
        print_summary(trajectory)
    failure = frontend.write_page("trajectory", lambda: [write_trajectory_report(trajectories, checkpoints, path)], str(path))
    if failure is not None:
        return failure
    print(f"cache: {cache_folder(options)}")
    if any(t.unusable for t in trajectories) or not any(t.records for t in trajectories):
        return EXIT_ERROR
    regressed = [f"{t.spec.display_path}::{check}" for t in trajectories for check in t.regressions]
    if regressed:
        print(f"REGRESSED in the latest checkpoint (passed earlier): {', '.join(regressed)}")
        return EXIT_REGRESSED
    return EXIT_OK


def _with_failures(trajectory: Trajectory, checkpoints: Sequence[Checkpoint], failed: dict[str, Unusable]) -> Trajectory:
    measured = {record.reference for record in trajectory.records}
    missing = [failed.get(c.reference) or Unusable(c.reference, c.label, c.step, "another rank could not measure it (see its log)")
               for c in checkpoints if c.reference not in measured]
    return replace(trajectory, unusable=(*trajectory.unusable, *missing))
