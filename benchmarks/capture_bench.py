"""Capture cost against a plain forward pass, in one process: time ratios and peak memory above the model.

    python benchmarks/capture_bench.py                      # SmolLM2-135M, 8/32/128 x 256 tokens
    python benchmarks/capture_bench.py --model random-gpt2-small --sequences 8 32 --tokens 1024

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


VARIANTS: dict[str, Callable] = {
    "floor": run_floor,
    "geomcheck": run_geomcheck,
    "naive": run_naive,
    "transformer_lens": run_transformer_lens,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--sequences", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["floor", "geomcheck", "naive"], choices=list(VARIANTS))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    lm = load_model(args.model)
    print(f"model {args.model}: {sum(p.numel() for p in lm.model.parameters()) / 1e6:.0f}M parameters, torch threads {torch.get_num_threads()}")
    rows = []
    for sequences in args.sequences:
        batch = token_ids(lm, sequences, args.tokens)
        run_floor(lm, token_ids(lm, min(sequences, 2), args.tokens), args.batch_size)  # warm-up
        results = {}
        for variant in args.variants:
            times, peaks = [], []
            for _ in range(args.repeats):
                with PeakMemory() as memory:
                    started = time.perf_counter()
                    VARIANTS[variant](lm, batch, args.batch_size)
                    times.append(time.perf_counter() - started)
                peaks.append(memory.above_start_mb)
                gc.collect()
            results[variant] = (statistics.median(times), max(peaks))
        floor_time = results.get("floor", (float("nan"),))[0]
        for variant, (seconds, peak) in results.items():
            row = {
                "model": args.model,
                "sequences": sequences,
                "tokens": args.tokens,
                "variant": variant,
                "seconds": round(seconds, 2),
                "time_vs_floor": round(seconds / floor_time, 3),
                "peak_mb_above_start": round(peak),
            }
            if "geomcheck" in results and variant != "geomcheck":
                row["memory_vs_geomcheck"] = round(peak / max(results["geomcheck"][1], 1.0), 1)
            rows.append(row)
            print(json.dumps(row))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
