"""A whole spec run on random-init LLaMA-layout models of real sizes, by stage, against their forward passes.

Run on a machine with CUDA (``bash benchmarks/gpu_session.sh`` calls it):
``python benchmarks/gpu_run.py --shapes 1b 8b --device cuda --dtype bfloat16 --json $OUT/run.json``.
On the CPU, ``--shapes tiny`` runs the same code on a 4-block width-64 model in seconds (the test suite
does, so the script a GPU session depends on is known to work before a device is lent).

For each shape, in one process: the model is built as a ``random:`` twin of a config written to a
temporary folder (weights drawn on the device, as geomcheck builds every twin), with a word-level
tokenizer over geomcheck's bundled corpus (no downloads, no packaged weights needed); then
1. the plain forward passes over every input set the specs need (no hooks, no LM head): the floor;
2. the same checks ``geomcheck run --spec specs`` runs (decoder.yaml and llama.yaml apply), timed
   by stage as ``run_breakdown.py`` times them (capture, each property's measurement and replicates,
   the report), with the device synchronised at each stage's end;
3. the floor again; the mean of the two is reported, their spread beside it.
One JSON row per shape: load, floor, run, run minus load over the floor, and every stage. The target
of issue #23: the whole run minus loading at most 3 x its forward passes + 2 s, at 1B and 8B.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SHAPES: dict[str, dict[str, int]] = {
    # LLaMA-3.2-1B and LLaMA-3-8B layouts (vocabulary cut: ids come from a corpus word tokenizer).
    "1b": dict(num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8),
    "8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8),
    "tiny": dict(num_hidden_layers=4, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2),
}
VOCAB = 8192


def corpus_tokenizer(vocab_size: int = VOCAB):
    """A word-level tokenizer over the bundled corpus' most frequent words: real text, no files to fetch."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from geomcheck.capture.inputs import bundled_corpus_text

    counts: dict[str, int] = {}
    for word in bundled_corpus_text().split():
        counts[word] = counts.get(word, 0) + 1
    specials = ["<unk>", "<s>", "</s>"]
    words = sorted(counts, key=lambda w: (-counts[w], w))[: vocab_size - len(specials)]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def model_dir(shape: str) -> Path:
    from transformers import LlamaConfig

    folder = Path(tempfile.mkdtemp(prefix=f"geomcheck-{shape}-"))
    config = LlamaConfig(vocab_size=VOCAB, max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
                         **SHAPES[shape])
    config.save_pretrained(folder)
    corpus_tokenizer().save_pretrained(folder)
    return folder


def synchronised(device: str):
    def wait() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return wait


def one_shape(shape: str, device: str, dtype: str, sequences: int | None, tokens: int | None) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from run_breakdown import Timers, floor_seconds, instrument

    from geomcheck.capture.inputs import build_batch
    from geomcheck.gate.damage import reduce_inputs
    from geomcheck.models.refs import LoadOptions
    from geomcheck.report import write_reports
    from geomcheck.runner import GeomSession
    from geomcheck.spec.schema import load_specs

    wait = synchronised(device)
    ref = f"random:{model_dir(shape)}"
    timers = Timers()
    instrument(timers)
    session = GeomSession(LoadOptions(device=device, dtype=dtype))
    started = time.perf_counter()
    loaded = session.model(ref)
    wait()
    load_seconds = time.perf_counter() - started
    specs = [s for s in load_specs([ROOT / "specs"]) if s.matches(ref, loaded.table.family)]
    if sequences is not None and tokens is not None:
        specs = [reduce_inputs(s, sequences, tokens) for s in specs]
    session.plan((spec, check) for spec in specs for check in spec.checks)
    sets = list(dict.fromkeys(session.inputs_for(s, c) for s in specs for c in s.checks))
    batches = [build_batch(s, loaded.tokenizer, bos_token_id=loaded.bos_token_id, default_bos=loaded.default_bos,
                           vocab_size=int(loaded.model.config.vocab_size)) for s in sets]
    floor_seconds(loaded, [b.__class__(b.ids[:2], b.bos, b.spec, b.description) for b in batches[:1]])  # kernels warmed
    wait()
    before = floor_seconds(loaded, batches)
    wait()
    started = time.perf_counter()
    statuses = [session.run_check(spec, check, ref).outcome.status for spec in specs for check in spec.checks]
    with tempfile.TemporaryDirectory() as reports, timers.timing("report"):
        write_reports(session, reports)
    wait()
    run_seconds = time.perf_counter() - started
    after = floor_seconds(loaded, batches)
    wait()
    floor = (before + after) / 2
    stages = {k: round(v, 3) for k, v in timers.seconds.items() if not k.startswith("__")}
    return {
        "shape": shape, "config": SHAPES[shape], "device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "dtype": dtype, "inputs": [f"{b.n_sequences}x{b.length}" for b in batches], "checks": len(statuses),
        "load_s": round(load_seconds, 3), "floor_s": round(floor, 3), "floor_spread_s": round(abs(before - after), 3),
        "run_s": round(run_seconds, 3), "run_over_floor": round(run_seconds / floor, 2) if floor > 0 else None,
        "target_s": round(3 * floor + 2, 3), "stages": stages,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=["1b", "8b"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--sequences", type=int, default=None, help="cap every input set (with --tokens); default: the specs' own")
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for shape in args.shapes:
        print(f"shape {shape} on {args.device} ...", file=sys.stderr, flush=True)
        rows.append(one_shape(shape, args.device, args.dtype, args.sequences, args.tokens))
        print(json.dumps(rows[-1]), flush=True)
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
