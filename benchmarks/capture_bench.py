"""Capture cost against a plain forward pass, in one process: time ratios and peak memory above the model.

    python benchmarks/capture_bench.py --suite              # everything docs/performance.md reports
    python benchmarks/capture_bench.py --sequences 8 32     # one model, chosen sizes
    python benchmarks/capture_bench.py --model random-gpt2-small --sequences 8 --tokens 1024

Variants: ``floor`` (base model forward, no hooks), ``geomcheck`` (all sites, default reducers,
verification on; ``geomcheck_no_means`` and ``geomcheck_norms`` drop reducers to show what each costs), ``naive`` (keep every site of every token in fp32, then concatenate: the research
code's way), ``transformer_lens`` (TransformerBridge.run_with_cache, when transformer-lens is
installed).

Time: every variant runs in this one process on the same loaded model, interleaved repeat by
repeat, and the median is compared with the floor's median. Memory: a freed activation block stays
in the allocator's pool, so one process cannot tell variants apart; each (variant, size) runs once
more in a fresh process that loads the model, and reports its peak resident set (sampled every
2 ms) above the level right after loading: "memory above the model's own".
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from geomcheck.capture import hooks as capture
from geomcheck.capture import inputs
from geomcheck.models import loader as models

PAGE = os.sysconf("SC_PAGE_SIZE")
MALLOC = ["pinned"]  # this run's --malloc, handed to the memory probes' fresh processes


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


RANDOM_LLAMA = {
    "random-llama-1b": dict(num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, max_position_embeddings=4096,
                            tie_word_embeddings=True),
    "random-llama-8b": dict(num_hidden_layers=32, hidden_size=4096, intermediate_size=14336, max_position_embeddings=8192,
                            tie_word_embeddings=False),
}


def load_model(name: str, device: str = "cpu") -> models.LoadedModel:
    if name in RANDOM_LLAMA:
        # Random-init LLaMA layouts of issue #17 (~1B: 16 x 2048) and issue #23 (8B: 32 x 4096) in bfloat16,
        # drawn on the device: weights are not needed for timing, only the shapes and the kernels they run.
        from transformers import LlamaConfig, LlamaForCausalLM

        from geomcheck.models.adapters import table_for

        torch.manual_seed(0)
        shape = RANDOM_LLAMA[name]
        config = LlamaConfig(num_attention_heads=32, num_key_value_heads=8, vocab_size=128256, **shape)
        with torch.device(device):
            model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
        ref = models.ModelRef(name, "directory", "in-memory")
        text = f"random LlamaConfig ({shape['num_hidden_layers']} x {shape['hidden_size']}), bfloat16"
        return models.LoadedModel(ref, model, None, table_for("llama"), text, 0.0, 0)
    if name == "random-gpt2-small":
        from transformers import GPT2Config, GPT2LMHeadModel

        from geomcheck.models.adapters import table_for

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
    return inputs.build_batch(spec, lm.tokenizer, bos_token_id=lm.bos_token_id, default_bos=lm.default_bos, vocab_size=lm.model.config.vocab_size)


def run_floor(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    ids = torch.from_numpy(batch.ids)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            lm.base(input_ids=ids[start : start + batch_size].to(lm.input_device), use_cache=False)


def synchronise(lm: models.LoadedModel) -> None:
    """Wait for queued GPU work, so a timer measures the work and not only its launch."""
    if lm.input_device.type == "cuda":
        torch.cuda.synchronize(lm.input_device)


def run_geomcheck(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    capture.capture(lm, batch, capture.CapturePlan(batch_size=batch_size, progress=False))


def run_geomcheck_no_means(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    """Without per-group position means: what the decoder.yaml and llama.yaml checks read (norms, samples)."""
    capture.capture(lm, batch, capture.CapturePlan(batch_size=batch_size, progress=False, position_means=()))


def run_geomcheck_norms(lm: models.LoadedModel, batch: inputs.TokenBatch, batch_size: int) -> None:
    """Norms and peaks only, verification on: the hooks' fixed cost."""
    capture.capture(lm, batch, capture.CapturePlan(batch_size=batch_size, progress=False, position_means=(), sampled=()))


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
    "geomcheck_no_means": run_geomcheck_no_means,
    "geomcheck_norms": run_geomcheck_norms,
    "naive": run_naive,
    "transformer_lens": run_transformer_lens,
}


def naive_bytes(lm: models.LoadedModel, sequences: int, tokens: int) -> int:
    """What keeping every site costs: five hooked outputs per block, fp32, copied once more by the concatenation."""
    return 2 * 5 * lm.n_blocks * sequences * (tokens + 1) * lm.hidden_size * 4


def cpu_name() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def available_bytes() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def measure(
    lm: models.LoadedModel,
    sequences: int,
    tokens: int,
    timed: list[str],
    repeats: int,
    batch_size: int,
    memory: list[str] | None = None,
) -> list[dict]:
    """Interleaved timing in this process; memory of each variant in a fresh process."""
    memory = timed if memory is None else memory
    batch = token_ids(lm, sequences, tokens)
    if timed:
        run_floor(lm, token_ids(lm, min(sequences, 2), tokens), batch_size)  # warm-up
    times: dict[str, list[float]] = {variant: [] for variant in timed}
    on_gpu = lm.input_device.type == "cuda"
    gpu_peaks: dict[str, list[float]] = {variant: [] for variant in timed}
    for _ in range(repeats):
        for variant in timed:
            gc.collect()
            if on_gpu:  # no empty_cache: a fresh cudaMalloc in the timed region would bill the allocator, not the variant
                torch.cuda.reset_peak_memory_stats(lm.input_device)
                resting = torch.cuda.memory_allocated(lm.input_device)
            synchronise(lm)
            started = time.perf_counter()
            VARIANTS[variant](lm, batch, batch_size)
            synchronise(lm)
            times[variant].append(time.perf_counter() - started)
            if on_gpu:
                gpu_peaks[variant].append((torch.cuda.max_memory_allocated(lm.input_device) - resting) / 2**20)
    peaks: dict[str, float | str] = {}
    if on_gpu:  # the allocator's own counters are exact and resettable: no fresh process needed
        peaks = {variant: round(max(values), 1) for variant, values in gpu_peaks.items()}
        memory = []
    for variant in memory:
        needed = naive_bytes(lm, sequences, tokens) if variant == "naive" else 0
        if needed > 0.6 * available_bytes():
            peaks[variant] = f"not run: needs ~{needed / 2**30:.0f} GiB of {available_bytes() / 2**30:.0f} GiB available"
        else:
            peaks[variant] = memory_in_fresh_process(lm.ref.text, variant, sequences, tokens, batch_size)
    floor_time = statistics.median(times["floor"]) if times.get("floor") else None
    ours = peaks.get("geomcheck")
    rows = []
    for variant in dict.fromkeys([*timed, *memory]):
        seconds = statistics.median(times[variant]) if variant in times else None
        peak = peaks.get(variant)
        rows.append({
            "model": lm.ref.text, "sequences": sequences, "tokens": tokens, "variant": variant, "repeats": repeats if seconds else 0,
            "seconds": None if seconds is None else round(seconds, 4),
            "all_seconds": [round(t, 4) for t in times.get(variant, [])],
            "time_vs_floor": None if seconds is None or floor_time is None else round(seconds / floor_time, 3),
            "device": str(lm.input_device),
            "peak_mb_above_model": peak,
            "memory_vs_geomcheck": round(peak / ours, 1) if isinstance(peak, float) and isinstance(ours, float) and ours > 0 else None,
            "memory_vs_floor": round(peak / peaks["floor"], 3) if isinstance(peak, float) and isinstance(peaks.get("floor"), float) and peaks["floor"] > 0 else None,
        })
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def memory_in_fresh_process(model: str, variant: str, sequences: int, tokens: int, batch_size: int) -> float:
    command = [sys.executable, __file__, "--memory-probe", variant, "--model", model, "--sequences", str(sequences), "--tokens", str(tokens),
               "--batch-size", str(batch_size), "--malloc", MALLOC[0]]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb_above_model"])


def memory_probe(args: argparse.Namespace) -> None:
    lm = load_model(args.model)
    batch = token_ids(lm, args.sequences[0], args.tokens)
    # One tiny forward first, so one-time set-up (kernels, lazily built buffers) is not billed to the variant.
    run_floor(lm, token_ids(lm, 1, 8), 1)
    gc.collect()
    with PeakMemory() as memory:
        VARIANTS[args.memory_probe](lm, batch, args.batch_size)
    print(json.dumps({"variant": args.memory_probe, "peak_mb_above_model": round(memory.above_start_mb, 1)}))


ALL = ("floor", "geomcheck", "naive", "transformer_lens")
SUITE = [
    # (model, sequences, tokens, timing repeats, timed variants, variants whose memory is probed)
    # Peers are timed at the smallest size only and the largest size is probed for memory only:
    # that keeps the whole suite near 15 minutes on 2 cores while every target is measured.
    ("smollm2-135m", 8, 256, 3, ALL, ALL),
    ("smollm2-135m", 32, 256, 2, ("floor", "geomcheck"), ALL),
    ("smollm2-135m", 128, 256, 0, (), ("geomcheck", "naive", "transformer_lens")),
    ("random-gpt2-small", 8, 256, 3, ALL[:3], ALL[:3]),
    ("random-gpt2-small", 8, 1024, 1, ALL[:3], ALL[:3]),
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
    lines = ["| model | sequences x tokens | variant | time (s), median | x floor | peak MB above the model | x geomcheck memory |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row["model"], f"{row['sequences']} x {row['tokens']}", row["variant"], row["seconds"], row["time_vs_floor"], row["peak_mb_above_model"], row["memory_vs_geomcheck"]]
        lines.append("| " + " | ".join("—" if cell is None else str(cell) for cell in cells) + " |")
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
    parser.add_argument("--device", default="cpu", help="cpu, or cuda: time with synchronisation and read the GPU "
                        "allocator's peak (e.g. --device cuda --model random-llama-1b --sequences 8 --tokens 1024)")
    parser.add_argument("--malloc", choices=("pinned", "default"), default="pinned",
                        help="pinned: glibc's thresholds as the geomcheck command pins them (geomcheck.capture.allocator); "
                        "default: glibc's own, as in a Python process that does not set them")
    parser.add_argument("--profile", choices=list(VARIANTS), help="after timing, profile one run of this variant "
                        "(torch.profiler) and print the operators that took the most device (or CPU) time")
    parser.add_argument("--memory-probe", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    MALLOC[0] = args.malloc
    if args.malloc == "pinned":
        from geomcheck.capture.allocator import pin_malloc_thresholds

        pin_malloc_thresholds()
    torch.manual_seed(0)
    if args.memory_probe:
        return memory_probe(args)
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{available_bytes() / 2**30:.1f} GiB available, malloc thresholds {args.malloc}")
    if args.suite:
        rows, loaded = [], {}
        usable = [v for v in ALL if v != "transformer_lens" or _has_transformer_lens()]
        for name, sequences, tokens, repeats, timed, probed in SUITE:
            lm = loaded[name] if name in loaded else loaded.setdefault(name, load_model(name))
            timed, probed = [v for v in timed if v in usable], [v for v in probed if v in usable]
            rows += measure(lm, sequences, tokens, timed, repeats, args.batch_size, memory=probed)
        print(json.dumps(spec_run_seconds()))
        print(markdown(rows))
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=2)
        return
    lm = load_model(args.model, args.device)
    if args.device != "cpu" and lm.input_device.type == "cpu":
        lm.model.to(args.device)
    rows = []
    for sequences in args.sequences:
        rows += measure(lm, sequences, args.tokens, args.variants, args.repeats, args.batch_size)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    if args.profile:
        profile(lm, token_ids(lm, args.sequences[-1], args.tokens), args.profile, args.batch_size)


def profile(lm: models.LoadedModel, batch: inputs.TokenBatch, variant: str, batch_size: int) -> None:
    """Where one run of ``variant`` spends its time, by operator: the profile behind the ratios."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    on_gpu = lm.input_device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    VARIANTS[variant](lm, batch, batch_size)  # warm
    synchronise(lm)
    with torch_profile(activities=activities) as prof:
        VARIANTS[variant](lm, batch, batch_size)
        synchronise(lm)
    key = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=48))


if __name__ == "__main__":
    main()
