"""Capture cost against a plain forward pass, in one process: time ratios and peak memory above the model.

    python benchmarks/capture_bench.py --suite              # everything docs/performance.md reports
    python benchmarks/capture_bench.py --sequences 8 32     # one model, chosen sizes
    python benchmarks/capture_bench.py --model random-gpt2-small --sequences 8 --tokens 1024

Variants: ``floor`` (base model forward, no hooks), ``geomcheck`` (all sites, default reducers,
verification on), ``naive`` (keep every site of every token in fp32, then concatenate: the research
code's way), ``transformer_lens`` (TransformerBridge.run_with_cache, when transformer-lens is
installed). Memory is the peak resident set above the level just before the variant started,
sampled every 2 ms by a thread, so variants can share one process and one loaded model.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from geomcheck import capture, inputs, models

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakMemory:
    """Peak RSS above the starting level while the block runs."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def above_start_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def load_model(name: str) -> models.LoadedModel:
    if name == "random-gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        from geomcheck.adapters import table_for

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config()).eval()  # 124M parameters, the GPT-2 small shape
        ref = models.ModelRef("random-gpt2-small", "directory", "in-memory")
        return models.LoadedModel(ref, model, None, table_for("gpt2"), "random GPT2Config()", 0.0, 0)
    return models.load(name)


def token_ids(lm: models.LoadedModel, sequences: int, tokens: int) -> inputs.TokenBatch:
    if lm.tokenizer is None:
        rng = np.random.default_rng(0)
        ids = rng.integers(0, lm.model.config.vocab_size, size=(sequences, tokens))
        return inputs.TokenBatch(ids, False, inputs.InputSpec(sequences=sequences, tokens=tokens), "random token ids")
    spec = inputs.InputSpec(sequences=sequences, tokens=tokens)
    return inputs.build_batch(spec, lm.tokenizer, bos_token_id=lm.bos_token_id, default_bos=lm.table.prepend_bos, vocab_size=lm.model.config.vocab_size)


def run_floor(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    ids = torch.from_numpy(batch.ids)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            lm.base(input_ids=ids[start : start + batch_size], use_cache=False)


def run_geomcheck(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    capture.capture(lm, batch, capture.CapturePlan(batch_size=batch_size, progress=False))


def run_naive(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    """Every site of every token kept in fp32 and concatenated at the end."""
    table = lm.table
    modules = []
    for block in table.block_modules(lm.base):
        modules += [table.resolve(block, path) for path in (table.norm_attn, table.attn, table.norm_mlp, table.mlp)]
        modules.append(block)
    kept: list[list[torch.Tensor]] = [[] for _ in modules]

    def keeper(slot: list[torch.Tensor]):
        def hook(module, args, output) -> None:
            tensor = output[0] if isinstance(output, tuple) else output
            slot.append(tensor.detach().float().clone())

        return hook

    handles = [module.register_forward_hook(keeper(slot)) for module, slot in zip(modules, kept)]
    try:
        run_floor(lm, batch, batch_size)
        stacked = [torch.cat(parts) for parts in kept]
        kept.clear()
        assert len(stacked) == len(modules)
    finally:
        for handle in handles:
            handle.remove()


def run_transformer_lens(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    from transformer_lens.model_bridge import TransformerBridge

    bridge = getattr(lm, "_bridge", None)
    if bridge is None:
        bridge = TransformerBridge.boot_transformers("HuggingFaceTB/SmolLM2-135M", hf_model=lm.model, tokenizer=lm.tokenizer, device="cpu")
        lm._bridge = bridge
    ids = torch.from_numpy(batch.ids)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            _, cache = bridge.run_with_cache(ids[start : start + batch_size])
            del cache


def _has_transformer_lens() -> bool:
    import importlib.util

    return importlib.util.find_spec("transformer_lens") is not None


VARIANTS: dict[str, Callable] = {
    "floor": run_floor,
    "geomcheck": run_geomcheck,
    "naive": run_naive,
    "transformer_lens": run_transformer_lens,
}


def naive_bytes(lm: models.LoadedModel, sequences: int, tokens: int) -> int:
    """What keeping every site costs: five hooked outputs per block, fp32, copied once more by the concatenation."""
    return 2 * 5 * lm.n_blocks * sequences * (tokens + 1) * lm.hidden_size * 4


def available_bytes() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(lm: models.LoadedModel, sequences: int, tokens: int, variants: list[str], repeats: int, batch_size: int) -> list[dict]:
    batch = token_ids(lm, sequences, tokens)
    run_floor(lm, token_ids(lm, min(sequences, 2), tokens), batch_size)  # warm-up
    results: dict[str, tuple[float, float]] = {}
    skipped: dict[str, str] = {}
    for variant in variants:
        if variant == "naive" and naive_bytes(lm, sequences, tokens) > 0.6 * available_bytes():
            skipped[variant] = f"not run: needs ~{naive_bytes(lm, sequences, tokens) / 2**30:.0f} GiB, {available_bytes() / 2**30:.0f} GiB available"
            continue
        times, peaks = [], []
        for _ in range(repeats):
            with PeakMemory() as memory:
                started = time.perf_counter()
                VARIANTS[variant](lm, batch, batch_size)
                times.append(time.perf_counter() - started)
            peaks.append(memory.above_start_mb)
            gc.collect()
        results[variant] = (statistics.median(times), max(peaks))
    floor_time = results["floor"][0]
    ours = results.get("geomcheck", (float("nan"), float("nan")))[1]
    rows = []
    for variant, (seconds, peak) in results.items():
        rows.append({
            "model": lm.ref.text, "sequences": sequences, "tokens": tokens, "variant": variant, "repeats": repeats,
            "seconds": round(seconds, 2), "time_vs_floor": round(seconds / floor_time, 3),
            "peak_mb_above_start": round(peak), "memory_vs_geomcheck": round(peak / max(ours, 1.0), 1),
        })
    rows += [{"model": lm.ref.text, "sequences": sequences, "tokens": tokens, "variant": v, "note": why} for v, why in skipped.items()]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


SUITE = [
    # (model, sequences, tokens, repeats)
    ("smollm2-135m", 8, 256, 3),
    ("smollm2-135m", 32, 256, 2),
    ("smollm2-135m", 128, 256, 1),
    ("random-gpt2-small", 8, 256, 3),
    ("random-gpt2-small", 32, 256, 1),
    ("random-gpt2-small", 8, 1024, 1),
]


def spec_run_seconds() -> dict[str, float]:
    """Warm-cache load time and the full default spec run (capture, measure, report), as a user runs it."""
    from geomcheck.runner import RunOptions, run_cli

    started = time.perf_counter()
    models.load("smollm2-135m")
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    code = run_cli(RunOptions(models=("smollm2-135m",), specs=("specs/llama.yaml",), report="reports/benchmark-run.html"))
    return {"load_seconds_warm_cache": round(load_seconds, 2), "spec_run_seconds": round(time.perf_counter() - started, 1), "spec_run_exit_code": code}


def markdown(rows: list[dict]) -> str:
    lines = ["| model | sequences x tokens | variant | time (s) | x floor | peak MB above start | x geomcheck memory |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        size = f"{row['sequences']} x {row['tokens']}"
        if "note" in row:
            lines.append(f"| {row['model']} | {size} | {row['variant']} | {row['note']} | | | |")
        else:
            lines.append(f"| {row['model']} | {size} | {row['variant']} | {row['seconds']} | {row['time_vs_floor']} | {row['peak_mb_above_start']} | {row['memory_vs_geomcheck']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sequences", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["floor", "geomcheck", "naive"], choices=list(VARIANTS))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--suite", action="store_true", help="run every size and model of docs/performance.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, {available_bytes() / 2**30:.1f} GiB available")
    if args.suite:
        rows, loaded = [], {}
        for name, sequences, tokens, repeats in SUITE:
            lm = loaded.setdefault(name, load_model(name))
            variants = ["floor", "geomcheck", "naive"] + (["transformer_lens"] if name == "smollm2-135m" and _has_transformer_lens() else [])
            rows += measure(lm, sequences, tokens, variants, repeats, args.batch_size)
        print(json.dumps(spec_run_seconds()))
        print(markdown(rows))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=2)
        return
    lm = load_model(args.model)
    rows = []
    for sequences in args.sequences:
        rows += measure(lm, sequences, args.tokens, args.variants, args.repeats, args.batch_size)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
