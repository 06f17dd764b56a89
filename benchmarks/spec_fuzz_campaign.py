"""Seeded fuzz campaign over the spec collection path: generate, parse, validate and collect >= 10,000 specs.

Run (one command; about two minutes on one core)::

    python benchmarks/spec_fuzz_campaign.py --specs 12000 --seed 0 --update

Every spec goes through what ``pytest --geom-model`` does before any model loads: ``load_spec`` (half
of them, from a file in a sandbox project full of symlink loops and links that lead outside) or
``parse_spec`` (the other half), then each check's effective inputs and the token budget. Counted:

- accepted; rejected with file:line (a SpecError whose every problem names the file and a line
  inside it); refused by the token budget (the collector reports those at the check's file:line);
- rejected without a plausible location, and **tracebacks** (any other exception): target 0 each;
- the slowest spec in CPU seconds, and how many took over one second (target 0).

With ``--update``, a sample of accepted specs (``--update-sample``, default 40) then runs end to end
on a tiny random model with ``--update`` semantics (baselines recorded even for failing checks) and
HTML reports. An audit hook records every file opened for writing, renamed, created or removed
while specs are parsed and while they run; writes outside the temporary baseline and report roots
are listed (target 0). The parse phase must write nothing at all.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml

from geomcheck.capture.inputs import check_budget
from geomcheck.errors import GeomcheckError, InputError, SpecError
from geomcheck.properties import REGISTRY  # noqa: F401  (imported here, so no spec pays for importing sklearn)
from geomcheck.spec.schema import Spec, load_spec, parse_spec
from geomcheck.spec.yaml_positions import MAX_SPEC_BYTES, MAX_WRITTEN_NODES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test suite's helpers (tiny models, YAML paths)
from nested_paths import get, paths, set_at  # noqa: E402

CASE = "specs/case.yaml"
BASE: dict = {
    "name": "fuzz",
    "description": "a valid spec to break",
    "applies_to": {"families": ["llama", "gpt2"], "models": ["*"]},
    "inputs": {"mode": "corpus", "sequences": 4, "tokens": 32, "seed": 0},
    "checks": [
        {
            "id": "first",
            "property": "first_position_norm",
            "params": {"point": "resid_post", "threshold": 20.0},
            "layers": "all",
            "expect": {"metric": "ratio", "on": "per_layer", "min": 0, "mostly": 0.5},
            "tolerance": {"abs": 0.0, "rel": 0.1},
            "reason": "because",
        },
        {"id": "growth", "property": "layer_norm_growth", "layers": [0, -1], "expect": {"between": [0, 1000]}},
        {"id": "rep", "property": "repeated_token_convergence", "inputs": {"mode": "repeated_token", "sequences": 3},
         "expect": {"min": -1}},
        {"id": "seq", "property": "sequence_structure", "params": {"early_positions": 2}, "expect": {"min": -1}},
    ],
}
TAGS = ["!!bool", "!!int", "!!float", "!!null", "!!str", "!!timestamp", "!!binary", "!!set", "!!omap", "!!python/none",
        "!!python/object/apply:os.system", "!custom", "!"]
TAG_TEXT = ["", "-", "+", "_", ".", "0x", "0b_", "maybe", "1:", "~", "1e5", ".inf", "yes", "0o7", "1_000", "12:30", "2024-01-01"]
BREAKERS = ["[", "]", "{", "}", ":", "- ", "&a ", "*a", "!!python/object:os.system ", "!x ", "\t", "'", '"', "\n", "? ", "|",
            ">", "%", "@", "`", "#", "---\n", "<<: ", "\x00", "\ufeff", "\x1b[2J", "\u2028", "&b [*b]", "*undefined "]
LINK_SOURCES = ["loop_a", "loop_b", "self_loop", "dangling", "out_file", "out_dir", "in_dir", "loop_dir", "texts", "texts/a.txt",
                "loop_dir/x.txt", "in_dir/loop_a", "in_dir/in_dir/texts", "out_dir/secret.txt", "loop_a/..", ".", "../outside",
                "/etc/passwd", "texts/up/up/texts", "~/x", "\x00", "a" * 300]
HOSTILE_NAMES = ["../../../../tmp/escaped", "/tmp/abs", "..", ".", ".hidden", "a/b", "a\\b", "x" * 256, "nul\x00byte",
                 "line\nbreak", "esc\x1b[2J", "-dash", "con", "ok-name"]


def _junk(rng: random.Random) -> object:
    kind = rng.randrange(10)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**63) - 1, 10**30, 10 ** rng.randrange(1, 400)])
    if kind == 3:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e300, -0.0, 0.5, 1e-300, 3.0])
    if kind == 4:
        return "".join(rng.choice("ab01 :-_.\\/'\"\n\t\x00\x1bé✓{}[]#&*!|>%@`") for _ in range(rng.randrange(12)))
    if kind == 5:
        return [rng.randrange(-100, 100) for _ in range(rng.randrange(5))]
    if kind == 6:
        return {f"k{rng.randrange(5)}": rng.randrange(-5, 5) for _ in range(rng.randrange(3))}
    if kind == 7:
        return rng.choice(["all", "intermediate", "early", "late", "single_token", "repeated_token", "text", "dataset", "per_layer"])
    if kind == 8:
        return rng.choice(["8", "1.5", "true", "null", "", "0"])
    return rng.randrange(-3, 40)


PATHS = paths(BASE)


def _dump(data: object, rng: random.Random) -> str:
    return yaml.safe_dump(data, sort_keys=rng.random() < 0.2, allow_unicode=rng.random() < 0.5, default_flow_style=rng.choice([None, True, False]))


def gen_mutation(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(3)
        path = rng.choice(PATHS)
        if action == 0:
            set_at(data, path, _junk(rng))
        elif action == 1:
            with contextlib.suppress(KeyError, IndexError, TypeError):
                target = get(data, path[:-1])
                del target[path[-1]]  # type: ignore[index, union-attr]
        else:
            with contextlib.suppress(KeyError, IndexError, TypeError):
                target = get(data, path[:-1])
                if isinstance(target, dict):
                    target[rng.choice(["zzz", "expect", "mostly", "on", "gate", "params", "inputs", "é", "1"])] = _junk(rng)
    return _dump(data, rng)


def gen_valid_variant(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    data["inputs"]["sequences"] = rng.randrange(1, 40)
    data["inputs"]["tokens"] = rng.choice([2, 8, 64, 127, 256, 5000, 1_000_000])
    data["checks"][0]["expect"] = rng.choice([{"min": rng.uniform(-5, 50)}, {"max": 3}, {"between": [1, 1]}, {"metric": "onset_layer", "between": [11, 11]}])
    data["checks"][1]["layers"] = rng.choice(["all", "late", [1, 3], {"from": 0.25, "to": 0.75}, {"blocks": [0, 2]}, [-2, -1]])
    if rng.random() < 0.3:
        data["checks"] = data["checks"][: rng.randrange(1, 5)]
    return _dump(data, rng)


def gen_numbers(rng: random.Random) -> str:
    low, high = _junk(rng), _junk(rng)
    form = rng.choice(["min: {low}", "max: {high}", "min: {low}, max: {high}", "between: [{low}, {high}]"])
    expect = form.format(low=json.dumps(low), high=json.dumps(high)).replace("NaN", ".nan").replace("Infinity", ".inf")
    mostly = rng.choice(["", ", on: per_layer, mostly: 0.5", ", mostly: 2", ", on: per_layer, mostly: .nan"])
    return f"checks:\n  - property: first_position_norm\n    expect: {{{expect}{mostly}}}\n"


def gen_layers(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    choice = rng.randrange(4)
    if choice == 0:
        selector: object = [rng.choice([rng.randrange(-2000, 2000), 10**30, 0.5, -0.5, 1.5, "3"]) for _ in range(rng.randrange(0, 5))]
    elif choice == 1:
        selector = {rng.choice(["from", "to", "blocks", "frm"]): rng.choice([rng.randrange(-50, 50), 0.3, 1.2, [1, 2], []]) for _ in range(rng.randrange(4))}
    elif choice == 2:
        selector = rng.choice(["all", "intermediate", "late", "earyl", "", "ALL"])
    else:
        selector = _junk(rng)
    data["checks"][1]["layers"] = selector
    return _dump(data, rng)


def gen_breakers(rng: random.Random) -> str:
    text = _dump(BASE, rng)
    for _ in range(rng.randrange(1, 5)):
        position = rng.randrange(len(text) + 1)
        text = text[:position] + rng.choice(BREAKERS) + text[position:]
    return text[: rng.randrange(len(text) + 1)] if rng.random() < 0.2 else text


def gen_tags(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    scalars = [p for p in PATHS if not isinstance(get(BASE, p), (dict, list))]
    placeholder = "__tagged_value__"
    set_at(data, rng.choice(scalars), placeholder)
    value = rng.choice(TAG_TEXT) if rng.random() < 0.7 else str(_junk(rng))
    return _dump(data, rng).replace(f"'{placeholder}'", placeholder).replace(placeholder, f"{rng.choice(TAGS)} {json.dumps(value)}")


def gen_nulls(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    for _ in range(rng.randrange(1, 4)):
        set_at(data, rng.choice(PATHS), None)
    checks = data.get("checks")
    if rng.random() < 0.5 and isinstance(checks, list) and isinstance(checks[-1], dict):
        inputs = checks[-1].setdefault("inputs", {})
        if isinstance(inputs, dict):
            inputs[rng.choice(["tokens", "sequences", "seed", "mode", "source", "bos"])] = None
    return _dump(data, rng)


def gen_symlinks(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    block = data["inputs"] if rng.random() < 0.5 else data["checks"][rng.randrange(4)].setdefault("inputs", {})
    source = rng.choice(LINK_SOURCES)
    block.update(mode=rng.choice(["text", "text", "dataset", "corpus"]), source=source if rng.random() < 0.7 else f"{{project}}/{source}")
    return _dump(data, rng)


def gen_names(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    data["name"] = rng.choice(HOSTILE_NAMES)
    data["checks"][rng.randrange(4)]["id"] = rng.choice(HOSTILE_NAMES)
    return _dump(data, rng)


def gen_dead(rng: random.Random) -> str:
    data = copy.deepcopy(BASE)
    check = data["checks"][0]
    pick = rng.randrange(5)
    if pick == 0:
        check["expect"] = {"metric": rng.choice(["onset_layer", "last_layer", "ratio", "max_abs_ratio"]), "on": "per_layer", "min": 1}
    elif pick == 1:
        data["applies_to"] = {rng.choice(["families", "models"]): []}
    elif pick == 2:
        check["inputs"] = rng.choice([{"mode": "single_token"}, {"mode": "single_token", "bos": True}, {"tokens": 1, "bos": False}, {"tokens": 1}])
    elif pick == 3:
        check["params"] = rng.choice([{"threshold": "8"}, {"threshold": 8}, {"point": 1}, {"threshold": True}])
    else:
        check["layers"] = rng.choice([[0, 5000], {"blocks": [1, -2000]}, [-1, 0], [3, 1]])
    return _dump(data, rng)


def gen_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(400)))


def gen_text(rng: random.Random) -> str:
    return "".join(rng.choice("abc:-[]{}#&*!|>'\"\n\t 0123456789.~é\x85\u2028") for _ in range(rng.randrange(300)))


GENERATORS: list[tuple[str, float, Callable[[random.Random], str | bytes]]] = [
    ("mutation", 0.22, gen_mutation),
    ("valid-variant", 0.06, gen_valid_variant),
    ("numbers", 0.07, gen_numbers),
    ("layers", 0.08, gen_layers),
    ("yaml-breakers", 0.12, gen_breakers),
    ("tags", 0.10, gen_tags),
    ("nulls", 0.08, gen_nulls),
    ("symlinks", 0.07, gen_symlinks),
    ("hostile-names", 0.05, gen_names),
    ("dead", 0.07, gen_dead),
    ("random-bytes", 0.04, gen_bytes),
    ("random-text", 0.04, gen_text),
]


def large_cases() -> list[str]:
    """Files whose cost is their node count: around and far beyond the limit, in every shape."""
    cases = []
    for count in (MAX_WRITTEN_NODES - 50, MAX_WRITTEN_NODES + 1, 100_000, 330_000):
        cases.append("checks: [" + ",".join(["1"] * count) + "]\n")
        cases.append("checks:\n" + "- 1\n" * count)
        cases.append("".join(f"k{i}: 1\n" for i in range(count // 2)))
        cases.append("checks:\n" + "".join(f"  - [{i}, {i}]\n" for i in range(count // 3)))
        cases.append("a: &x [1, 2]\nb: [" + ",".join(["*x"] * count) + "]\n")
    cases.append("[" * 200_000)
    cases.append("a:\n" + "".join(" " * i + "b:\n" for i in range(1, 1500)))
    return [case[: MAX_SPEC_BYTES - 1] for case in cases]


def sandbox_project(root: Path) -> Path:
    """A project with text files, symlink loops, dangling links and links that lead outside it."""
    project, outside = root / "project", root / "outside"
    for folder in (project / "specs", project / "texts", outside):
        folder.mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    (project / "texts" / "a.txt").write_text("inside words " * 200)
    (outside / "secret.txt").write_text("outside words")
    links = {"loop_a": "loop_b", "loop_b": "loop_a", "self_loop": "self_loop", "dangling": "missing.txt",
             "out_file": "../outside/secret.txt", "out_dir": "../outside", "in_dir": ".", "loop_dir": "loop_a", "texts/up": ".."}
    for name, target in links.items():
        os.symlink(target, project / name)
    return project


class WriteAudit:
    """Records what Python code writes while ``watching``: opens for writing, renames, mkdirs, removals, links."""

    EVENTS = frozenset({"os.rename", "os.mkdir", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.truncate", "os.chmod", "shutil.copyfile"})

    def __init__(self) -> None:
        self.watching = False
        self.writes: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if not self.watching:
            return
        if event == "open":
            path, mode, flags = (list(args) + [None, None, None])[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
            if writing and isinstance(path, (str, bytes, os.PathLike)):
                self.writes.append(os.path.abspath(os.fsdecode(path)))
        elif event in self.EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike)):
            self.writes.extend(os.path.abspath(os.fsdecode(a)) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike)))

    @contextlib.contextmanager
    def watch(self):
        self.watching = True
        try:
            yield
        finally:
            self.watching = False


def located(error: SpecError, text: str | bytes, path: str) -> bool:
    decoded = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    last_line = len(decoded.splitlines()) + 2
    return bool(error.problems) and all(
        p.path == path and 1 <= p.line <= last_line and p.column >= 1 and str(p).startswith(f"{path}:{p.line}:") for p in error.problems
    )


def collect(spec: Spec) -> str | None:
    """The collector's next step; returns the budget refusal (with the check's file:line) or None."""
    for check in spec.checks:
        inputs = check.effective_inputs(spec)
        if not all(isinstance(v, int) for v in (inputs.seed, inputs.tokens, inputs.sequences)):
            raise TypeError(f"{check.location}: inputs not complete after validation: {inputs}")
        try:
            check_budget(inputs, context_length=None)
        except InputError as exc:
            return f"{check.location}: {exc}"
    return None


def run_campaign(count: int, seed: int, project: Path, audit: WriteAudit) -> tuple[Counter, list[str], list[tuple[str, str]], list[tuple[float, str]]]:
    rng = random.Random(seed)
    names = [name for name, _, _ in GENERATORS]
    weights = [weight for _, weight, _ in GENERATORS]
    makers = {name: make for name, _, make in GENERATORS}
    counts: Counter = Counter()
    tracebacks: list[str] = []
    accepted: list[tuple[str, str]] = []
    times: list[tuple[float, str]] = []
    jobs = [("large-flat", case) for case in large_cases()]
    jobs += [(name, None) for name in rng.choices(names, weights, k=max(count - len(jobs), 0))]
    for index, (kind, fixed) in enumerate(jobs):
        text = fixed if fixed is not None else makers[kind](rng)
        if isinstance(text, str):
            text = text.replace("{project}", str(project))
        from_file = index % 2 == 0
        if from_file:
            (project / CASE).write_bytes(text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text)
        started = time.process_time()
        try:
            with audit.watch():
                spec = load_spec(project / CASE) if from_file else parse_spec(text, CASE, root=project)
                refusal = collect(spec)
            counts["refused by the token budget (at the check's file:line)" if refusal else "accepted"] += 1
            if not refusal:
                accepted.append((kind, text if isinstance(text, str) else text.decode("utf-8", errors="replace")))
        except SpecError as error:
            counts["rejected with file:line" if located(error, text, CASE) else "REJECTED WITHOUT A PLAUSIBLE LOCATION"] += 1
        except Exception:  # noqa: BLE001 - the campaign counts what escapes
            counts["TRACEBACKS"] += 1
            if len(tracebacks) < 8:
                tracebacks.append(f"[{kind} #{index}] " + "".join(traceback.format_exc().splitlines(keepends=True)[-4:]))
        times.append((time.process_time() - started, kind))
        counts[f"class {kind}"] += 1
    return counts, tracebacks, accepted, times


def run_update(accepted: list[tuple[str, str]], sample: int, seed: int, sandbox: Path, project: Path, audit: WriteAudit) -> tuple[Counter, list[str]]:
    """Accepted specs end to end with update semantics on a tiny random model; writes confined to two roots."""
    from tiny import save_tiny

    from geomcheck.runner import BaselineOptions, RunOptions, run_cli

    model = save_tiny(sandbox / "tiny-gpt2", "gpt2")
    baselines, reports = sandbox / "baselines", sandbox / "reports"
    rng = random.Random(seed + 1)
    chosen = rng.sample(accepted, min(sample, len(accepted)))
    codes: Counter = Counter()
    errors: list[str] = []
    for index, (_, text) in enumerate(chosen):
        spec_file = project / "specs" / f"update_{index}.yaml"
        spec_file.write_text(text, encoding="utf-8", errors="surrogatepass")
        options = RunOptions(models=(str(model),), specs=(str(spec_file),), report=str(reports) + "/", token_budget=4096,
                             baselines=BaselineOptions(root=baselines, update=True, force=True, ci=False))
        try:
            with audit.watch(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                codes[run_cli(options)] += 1
        except GeomcheckError as exc:
            codes[f"GeomcheckError {type(exc).__name__}"] += 1
        except Exception:  # noqa: BLE001
            codes["TRACEBACK"] += 1
            errors.append("".join(traceback.format_exc().splitlines(keepends=True)[-3:]))
    return codes, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=12_000, help="specs to generate (default 12000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--update", action="store_true", help="also run a sample of accepted specs with baseline updates")
    parser.add_argument("--update-sample", type=int, default=40)
    args = parser.parse_args(argv)

    sandbox = Path(tempfile.mkdtemp(prefix="geomcheck-fuzz-"))
    project = sandbox_project(sandbox)
    previous = Path.cwd()
    os.chdir(project)
    audit = WriteAudit()
    try:
        started = time.perf_counter()
        counts, tracebacks, accepted, times = run_campaign(args.specs, args.seed, project, audit)
        parse_writes = list(audit.writes)
        print(f"spec fuzz campaign: {sum(v for k, v in counts.items() if not k.startswith('class '))} specs, seed {args.seed}, "
              f"{time.perf_counter() - started:.0f} s")
        for key in ("accepted", "rejected with file:line", "refused by the token budget (at the check's file:line)",
                    "REJECTED WITHOUT A PLAUSIBLE LOCATION", "TRACEBACKS"):
            print(f"  {key:<58} {counts.get(key, 0):>6}")
        slowest, slowest_kind = max(times)
        print(f"  {f'slowest spec (CPU seconds; class {slowest_kind})':<58} {slowest:>6.2f}")
        print(f"  {'specs over 1 s of CPU':<58} {sum(t > 1.0 for t, _ in times):>6}")
        print(f"  {'files written while parsing':<58} {len(parse_writes):>6}")
        print("  by class: " + ", ".join(f"{k[6:]} {v}" for k, v in sorted(counts.items()) if k.startswith("class ")))
        for text in tracebacks:
            print("\n" + text)
        failed = counts.get("TRACEBACKS", 0) + counts.get("REJECTED WITHOUT A PLAUSIBLE LOCATION", 0) + len(parse_writes)
        failed += sum(t > 1.0 for t, _ in times)
        if args.update:
            audit.writes.clear()
            started = time.perf_counter()
            codes, errors = run_update(accepted, args.update_sample, args.seed, sandbox, project, audit)
            allowed = (str(sandbox / "baselines"), str(sandbox / "reports"))
            outside = sorted({w for w in audit.writes if not w.startswith(allowed)})
            inside = [w for w in audit.writes if w.startswith(allowed)]
            print(f"\nwith --update: {sum(codes.values())} accepted specs run on a tiny random GPT-2, "
                  f"{time.perf_counter() - started:.0f} s; exit codes {dict(sorted(codes.items(), key=str))}")
            print(f"  {'writes inside the baseline and report roots':<58} {len(inside):>6}")
            print(f"  {'writes outside them':<58} {len(outside):>6}")
            for path in outside[:20]:
                print(f"    {path}")
            for text in errors[:5]:
                print("\n" + text)
            failed += len(outside) + codes.get("TRACEBACK", 0)
        return 1 if failed else 0
    finally:
        os.chdir(previous)
        shutil.rmtree(sandbox, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
