"""``geomcheck compare``: run every check on A and on B in one session, print the table, write the page."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geomcheck.capture.inputs import DEFAULT_TOKEN_BUDGET
from geomcheck.errors import GeomcheckError
from geomcheck.gate.compare import (
    Comparison,
    InputComparison,
    compare_pair,
    summary_table,
)
from geomcheck.models.loader import LoadOptions, resolve
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import Spec

DEFAULT_DIRECTORY = Path("reports")


def compare(session: GeomSession, specs: Sequence[Spec], ref_a: str, ref_b: str, fail_on_drift: bool = False) -> Comparison:
    """Run every check of ``specs`` on A, then on B, in ``session``; raises GeomcheckError on load or input faults."""
    runs = {ref: [session.run_check(spec, check, ref) for spec in specs for check in spec.checks] for ref in dict.fromkeys((ref_a, ref_b))}
    captures = session.captures()
    inputs = []
    for input_spec in dict.fromkeys(session.inputs_for(spec, check) for spec in specs for check in spec.checks):
        first, second = captures.get((ref_a, input_spec)), captures.get((ref_b, input_spec))
        if first is None or second is None:
            continue
        same = first.batch.ids.shape == second.batch.ids.shape and bool(np.array_equal(first.batch.ids, second.batch.ids))
        inputs.append(InputComparison(input_spec, first.batch.description, tuple(first.batch.ids.shape), same))
    same_tokens = {item.spec: item.same_tokens for item in inputs}
    rows = tuple(compare_pair(a, b, same_tokens.get(session.inputs_for(a.spec, a.check), False))
                 for a, b in zip(runs[ref_a], runs[ref_b]))
    return Comparison(ref_a, ref_b, rows, tuple(inputs), fail_on_drift)


@dataclass(frozen=True)
class CompareOptions:
    ref_a: str
    ref_b: str
    specs: tuple[str, ...] = ("specs",)
    report: str | None = None
    write_report: bool = True
    load: LoadOptions = field(default_factory=LoadOptions)
    token_budget: int | None = None
    fail_on_drift: bool = False


def default_report_path(ref_a: str, ref_b: str) -> Path:
    """``reports/compare-<A key>-vs-<B key>.html``."""
    return DEFAULT_DIRECTORY / f"compare-{_key(ref_a)}-vs-{_key(ref_b)}.html"


def _key(ref: str) -> str:
    try:
        return resolve(ref).key
    except GeomcheckError:
        return "".join(c if c.isalnum() or c in "-_." else "-" for c in ref)


def run_compare(options: CompareOptions) -> int:
    """``geomcheck compare``: exit 0 nothing regressed, 1 a check flipped from passed to failed (or, with
    ``--fail-on-drift``, moved beyond noise and floor), 3 an error."""
    from geomcheck import frontend

    try:
        specs = frontend.read_specs("compare", options.specs)
        session = GeomSession(options.load, options.token_budget or DEFAULT_TOKEN_BUDGET, baselines=None)
        session.plan((spec, check) for spec in specs for check in spec.checks)
        comparison = compare(session, specs, options.ref_a, options.ref_b, options.fail_on_drift)
    except GeomcheckError as exc:
        return frontend.error("compare", str(exc))
    print(summary_table(comparison))
    for row in comparison.regressions:
        print(f"\nREGRESSED {row.spec.display_path}::{row.check.id}\n  A: {row.a.outcome.headline}\n  B: {row.b.outcome.headline}")
    for row in comparison.errors:
        side = row.a if row.a.outcome.status == "error" else row.b
        print(f"\nERROR {row.spec.display_path}::{row.check.id}: {side.outcome.headline}", file=sys.stderr)
    if options.write_report:
        from geomcheck.report.compare_html import write_compare_report

        path = Path(options.report) if options.report else default_report_path(options.ref_a, options.ref_b)
        if path.is_dir() or str(options.report or "").endswith(("/", "\\")):
            path = path / default_report_path(options.ref_a, options.ref_b).name
        failure = frontend.write_page("compare", lambda: [write_compare_report(session, comparison, path)], str(path))
        if failure is not None:
            return failure
    return comparison.exit_code
