"""Coverage matrix: every causal-LM model type of the installed transformers, captured and verified.

    python benchmarks/architecture_matrix.py                 # all types, writes docs/architectures.md
    python benchmarks/architecture_matrix.py gpt2 falcon     # chosen types, prints only
    python benchmarks/architecture_matrix.py --jobs 2 --timeout 90

For each model type in ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` a tiny random-init model is built from
its config class (geomcheck/models/tiny_random.py: 3 blocks, width 64), its adapter chosen as
``geomcheck.models.loader.load`` would (table, user-declared, inferred or refused), and every site
captured with residual verification. Workers are long-lived subprocesses fed one type at a time;
a type that runs past ``--timeout`` kills its worker, is recorded as a timeout and a fresh worker
takes the next type, so one hang cannot stop the matrix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "architectures.md"
START, END = "<!-- matrix:start -->", "<!-- matrix:end -->"


def run_one(model_type: str) -> dict[str, object]:
    """Build, adapt, capture and verify one model type; never raises."""
    import numpy as np

    from geomcheck.capture import hooks
    from geomcheck.capture.inputs import InputSpec, TokenBatch
    from geomcheck.errors import GeomcheckError, UnsupportedArchitectureError
    from geomcheck.models.loader import from_model
    from geomcheck.models.tiny_random import tiny_model

    started = time.perf_counter()
    row: dict[str, object] = {"model_type": model_type}

    def done(status: str, detail: str = "", **extra: object) -> dict[str, object]:
        row.update(status=status, detail=" ".join(detail.split())[:300], seconds=round(time.perf_counter() - started, 2), **extra)
        return row

    from transformers import CONFIG_MAPPING

    from geomcheck.models.adapters import check_model_type

    try:
        # Before building: a composite model's default vision tower alone takes a minute to initialise.
        check_model_type(model_type, CONFIG_MAPPING[model_type])
    except UnsupportedArchitectureError as exc:
        return done("refused", exc.reason or str(exc))
    try:
        model = tiny_model(model_type)
    except Exception as exc:  # noqa: BLE001 - any config class may fail in its own way; the matrix records it
        return done("not built", f"transformers cannot build a tiny {model_type} from its config class alone ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
    try:
        loaded = from_model(model, f"random:{model_type}")
    except UnsupportedArchitectureError as exc:
        return done("refused", exc.reason or str(exc))
    table = loaded.table
    ids = np.random.default_rng(0).integers(3, model.get_input_embeddings().weight.shape[0], (4, 16))
    batch = TokenBatch(ids=ids, bos=False, spec=InputSpec(sequences=4, tokens=16), description="matrix probe")
    try:
        acts = hooks.capture(loaded, batch, hooks.CapturePlan(batch_size=2, samples=16, progress=False))
    except GeomcheckError as exc:
        return done("capture failed", str(exc), adapter=table.origin, family=table.family, scheme=table.scheme)
    except Exception as exc:  # noqa: BLE001
        return done("capture failed", f"{type(exc).__name__}: {exc}", adapter=table.origin, family=table.family, scheme=table.scheme)
    worst = max(v.rms_error for v in acts.verification)
    per_block = len(hooks.block_points(table, table.block_modules(loaded.base)[0]))
    return done(
        "verified", table.note if table.origin == "inferred" else "",
        adapter=table.origin, family=table.family, scheme=table.scheme, error=worst, sites=len(acts.sites), sites_per_block=per_block,
    )


def worker() -> None:
    """Read model types on stdin, answer one JSON line each on stdout."""
    import warnings

    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from model code must not corrupt the protocol
    for line in sys.stdin:
        out.write(json.dumps(run_one(line.strip())) + "\n")


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )

    def ask(self, model_type: str, timeout: float) -> dict[str, object] | None:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(model_type + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        return json.loads(line) if line else None

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


def run_matrix(types: list[str], jobs: int, timeout: float) -> list[dict[str, object]]:
    todo: queue.Queue[str] = queue.Queue()
    for t in types:
        todo.put(t)
    rows: list[dict[str, object]] = []

    def drain() -> None:
        current = Worker()
        while True:
            try:
                model_type = todo.get_nowait()
            except queue.Empty:
                break
            started = time.perf_counter()
            row = current.ask(model_type, timeout)
            if row is None:
                current.close()
                row = {"model_type": model_type, "status": "timeout", "detail": f"no answer within {timeout:.0f} s (or the worker crashed)", "seconds": round(time.perf_counter() - started, 1)}
                current = Worker()
            rows.append(row)
            print(f"{row['model_type']:28s} {row['status']:15s} {row.get('adapter', ''):9s} {row['seconds']:6.1f}s  {str(row.get('detail', ''))[:110]}", flush=True)
        current.close()

    threads = [threading.Thread(target=drain) for _ in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(rows, key=lambda r: str(r["model_type"]))


def markdown(rows: list[dict[str, object]], seconds: float) -> str:
    import torch
    import transformers

    counts: dict[str, int] = {}
    for row in rows:
        key = f"{row['status']} ({row['adapter']})" if row["status"] == "verified" else str(row["status"])
        counts[key] = counts.get(key, 0) + 1
    lines = [
        START,
        f"Generated by `python benchmarks/architecture_matrix.py` with transformers {transformers.__version__}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores; {len(rows)} model types in {seconds:.0f} s.",
        "",
        "Totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ".",
        "",
        "| model type | outcome | adapter | block scheme | max verification error | seconds | reason / note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        error = f"{row['error']:.1e}" if "error" in row else ""
        detail = str(row.get("detail", "")).replace("|", "\\|")
        lines.append(
            f"| `{row['model_type']}` | {row['status']} | {row.get('adapter', '')} | {row.get('scheme', '')} | {error} | {row['seconds']} | {detail} |"
        )
    lines.append(END)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("types", nargs="*", help="model types (default: every causal-LM type)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.worker:
        worker()
        return 0
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    types = args.types or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    started = time.perf_counter()
    rows = run_matrix(types, args.jobs, args.timeout)
    elapsed = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if not args.types:
        text = DOC.read_text()
        head, tail = text.split(START)[0], text.split(END)[1]
        DOC.write_text(head + markdown(rows, elapsed) + tail)
        print(f"wrote {DOC}")
    verified = sum(row["status"] == "verified" for row in rows)
    print(f"{verified} of {len(rows)} model types verified in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
