"""Measuring a gate's error rates: false alarms on the unchanged model under fresh inputs, and power against damage.

A baseline is recorded on one input set (seed 0 of the spec's inputs). Each trial then measures a
model (the unchanged checkpoint, a harmless numerical change, or real damage) on another input
set, with the same spec, and counts the checks whose drift test alarms. The experiment uses the
same functions as a gated run (GeomSession, gate.baseline.against), so the rates it reports are
the rates of the gate people run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from geomcheck import properties
from geomcheck.gate import baseline, damage
from geomcheck.models.loader import LoadedModel, LoadOptions
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import Inputs, Spec

Kind = Literal["unchanged", "harmless", "damage"]


@dataclass(frozen=True)
class Condition:
    """One way of changing the model (or not) before a trial."""

    name: str
    kind: Kind
    build: Callable[[LoadedModel], LoadedModel]
    group: str = ""  # the damage class the zoo's tables gather strengths under ("block swap", "weight noise", ...)


@dataclass(frozen=True)
class Trial:
    """One condition under one input set: which checks alarmed against the baseline."""

    condition: str
    kind: Kind
    inputs: str
    alarms: tuple[str, ...]
    fixed_failures: tuple[str, ...]
    values_tested: int
    seconds: float


def unchanged(loaded: LoadedModel) -> LoadedModel:
    return loaded


def round_trip(dtype: torch.dtype) -> Callable[[LoadedModel], LoadedModel]:
    """Weights cast to ``dtype`` and back: what saving a checkpoint in half precision does to it."""

    def build(loaded: LoadedModel) -> LoadedModel:
        copy = damage.copy_model(loaded, f"{dtype} round trip")
        with torch.no_grad():
            for parameter in copy.model.parameters():
                parameter.copy_(parameter.to(dtype).to(parameter.dtype))
        return copy

    return build


def q8_0_round_trip(loaded: LoadedModel) -> LoadedModel:
    """Every matrix quantised to GGUF's Q8_0 (blocks of 32 values, one scale each) and back: what a Q8_0 GGUF holds."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize, quantize

    copy = damage.copy_model(loaded, "Q8_0 round trip")
    with torch.no_grad():
        for parameter in copy.model.parameters():
            if parameter.ndim >= 2 and parameter.shape[-1] % 32 == 0:
                values = parameter.detach().float().cpu().numpy().astype(np.float32)
                restored = dequantize(quantize(values, GGMLQuantizationType.Q8_0), GGMLQuantizationType.Q8_0)
                parameter.copy_(torch.from_numpy(np.ascontiguousarray(restored)).reshape(parameter.shape).to(parameter.dtype))
    return copy


def resaved(loaded: LoadedModel) -> LoadedModel:
    """Weights written to safetensors and read back into a fresh copy."""
    from safetensors.torch import load, save

    copy = damage.copy_model(loaded, "re-saved")
    state = {name: tensor.contiguous() for name, tensor in copy.model.state_dict().items()}
    restored = load(save({name: tensor for name, tensor in state.items() if not _shares_storage(name, state)}))
    copy.model.load_state_dict(restored, strict=False)
    return copy


def _shares_storage(name: str, state: dict[str, torch.Tensor]) -> bool:
    """Tied weights (the LM head sharing the embedding) are saved once, like save_pretrained does."""
    pointer = state[name].untyped_storage().data_ptr()
    return any(other < name and state[other].untyped_storage().data_ptr() == pointer for other in state)


def standard_conditions(n_blocks: int, seed: int = 0) -> dict[Kind, list[Condition]]:
    """The harmless changes and the damages that docs/gating.md reports."""
    middle = n_blocks // 2
    harmless = [
        Condition("bfloat16 round trip", "harmless", round_trip(torch.bfloat16)),
        Condition("float16 round trip", "harmless", round_trip(torch.float16)),
        Condition("re-saved (safetensors)", "harmless", resaved),
        Condition("noise 0.001 x std", "harmless", lambda lm: damage.add_noise(lm, 0.001, seed)),
    ]
    damages = [
        Condition(f"blocks {middle - 1} and {middle} swapped", "damage", lambda lm: damage.swap_blocks(lm, middle - 1, middle)),
        Condition(f"block {middle} re-initialised", "damage", lambda lm: damage.reinit_block(lm, middle, seed)),
        Condition("final norm removed", "damage", damage.remove_final_norm),
        *[Condition(f"noise {scale:g} x std", "damage", lambda lm, scale=scale: damage.add_noise(lm, scale, seed))
          for scale in (0.003, 0.01, 0.03, 0.1, 0.3)],
    ]
    return {"unchanged": [Condition("unchanged", "unchanged", unchanged)], "harmless": harmless, "damage": damages}


def zoo(loaded: LoadedModel, seed: int = 0) -> list[Condition]:
    """The damage zoo of docs/gating.md: conversion and fine-tuning bugs at several strengths, and the harmless controls.

    Each member's cost is measured, not assumed (gate.loss): a member is judged by the next-token loss it
    causes on the gate's own inputs, and the gate must alarm on those that cost 1 % or more.
    """
    n = loaded.n_blocks
    middle, early, late = n // 2, max(1, n // 8), n - 2
    members = [
        Condition("bfloat16 round trip", "harmless", round_trip(torch.bfloat16)),
        Condition("float16 round trip", "harmless", round_trip(torch.float16)),
        Condition("re-saved (safetensors)", "harmless", resaved),
        Condition("Q8_0 round trip", "harmless", q8_0_round_trip),
        Condition(f"blocks {middle - 1} and {middle} swapped", "damage", lambda lm: damage.swap_blocks(lm, middle - 1, middle), "block swap"),
        Condition(f"blocks {early} and {early + 1} swapped", "damage", lambda lm: damage.swap_blocks(lm, early, early + 1), "block swap"),
        Condition(f"blocks {late - 1} and {late} swapped", "damage", lambda lm: damage.swap_blocks(lm, late - 1, late), "block swap"),
        *[Condition(f"block {b} re-initialised", "damage", lambda lm, b=b: damage.reinit_block(lm, b, seed), "block re-initialised") for b in (early, middle, late)],
        *[Condition(f"noise {scale:g} x std", "damage", lambda lm, scale=scale: damage.add_noise(lm, scale, seed), "weight noise")
          for scale in (0.003, 0.01, 0.02, 0.03, 0.1)],
        Condition(f"q/k projections of blocks {n // 3} and {2 * n // 3} swapped", "damage",
                  lambda lm: damage.swap_query_key(lm, n // 3, 2 * n // 3), "q/k projections swapped"),
        Condition(f"q/k projections of blocks {middle} and {middle + 1} swapped", "damage",
                  lambda lm: damage.swap_query_key(lm, middle, middle + 1), "q/k projections swapped"),
        Condition(f"attention output transposed in block {middle}", "damage", lambda lm: damage.transpose_output(lm, (middle,)), "output projection transposed"),
        Condition("attention output transposed in every block", "damage", lambda lm: damage.transpose_output(lm, tuple(range(n))), "output projection transposed"),
        *[Condition(f"rotary base x {factor:g}", "damage", lambda lm, factor=factor: damage.rotary_base(lm, factor), "rotary base")
          for factor in (0.1, 0.5, 0.9, 2.0)],
        *[Condition(f"norm epsilon {eps:g}", "damage", lambda lm, eps=eps: damage.norm_epsilon(lm, eps), "norm epsilon") for eps in (1e-3, 1e-2, 1e-1)],
        Condition(f"block {middle}'s norm weights reset to 1", "damage", lambda lm: damage.reset_norms(lm, middle), "norm weights reset"),
        Condition(f"block {early}'s norm weights reset to 1", "damage", lambda lm: damage.reset_norms(lm, early), "norm weights reset"),
        *[Condition(f"{fraction:g} of block {middle}'s weights corrupted", "damage",
                    lambda lm, fraction=fraction: damage.corrupt_block(lm, middle, fraction, seed), "corrupted block") for fraction in (0.01, 0.1)],
        Condition("block biases dropped", "damage", damage.drop_biases, "biases dropped"),
        Condition("final norm removed", "damage", damage.remove_final_norm, "final norm removed"),
    ]
    return members


def record(spec: Spec, loaded: LoadedModel, root: Path, seed: int = 0) -> Path:
    """Record the baseline of ``loaded`` on the spec's own inputs (input seed offset ``seed``)."""
    # Under the model's own name, so a spec's applies_to (e.g. specs/smollm2.yaml) sees what it is.
    name = loaded.ref.text
    session = GeomSession(LoadOptions(seed=seed), baselines=BaselineOptions(root=root, update=True, force=True, ci=False))
    session.add_model(name, loaded)
    for check in spec.checks:
        session.run_check(spec, check, name)
    session.finish()
    return session.baseline_file(spec, name)


def with_inputs(spec: Spec, inputs: Inputs) -> Spec:
    """``spec`` with its corpus input sets read from ``inputs`` instead (checks with their own mode keep it)."""
    def inherit_mode(written: Inputs | None) -> Inputs | None:
        if written is None:
            return None
        return Inputs(**{name: getattr(written, name) for name in written.model_fields_set if name not in ("mode", "source")})

    checks = tuple(
        check if check.inputs is not None and check.inputs.mode not in (None, "corpus")
        else check.model_copy(update={"inputs": inherit_mode(check.inputs)})
        for check in spec.checks
    )
    return spec.model_copy(update={"inputs": spec.inputs.model_copy(update=inputs.model_dump(exclude_unset=True)), "checks": checks})


def trial(spec: Spec, loaded: LoadedModel, baseline_file: Path, condition: Condition, *, seed: int, label: str) -> Trial:
    """Measure ``condition`` applied to ``loaded`` at input seed offset ``seed`` and test it against the baseline."""
    started = time.perf_counter()
    variant = condition.build(loaded)
    session = GeomSession(LoadOptions(seed=seed), baselines=None)
    name = variant.ref.text
    session.add_model(name, variant)
    recorded = baseline.read(baseline_file)["checks"]
    alarms, fixed, tested = [], [], 0
    for check in spec.checks:
        result = session.run_check(spec, check, name)
        if result.measurement is None:
            fixed.append(f"{check.id} ({result.outcome.status})")
            continue
        if evaluate(check, result.measurement, model=name).status != "passed":
            fixed.append(check.id)
        fingerprint = session.inputs_fingerprint(spec, check, name)
        verdict = baseline.against(check, properties.get(check.property), recorded[check.id], result.measurement, fingerprint)
        tested += verdict.tested
        if verdict.alarms:
            alarms.append(check.id)
    return Trial(condition.name, condition.kind, label, tuple(alarms), tuple(fixed), tested, time.perf_counter() - started)


def as_json(trials: list[Trial]) -> list[dict[str, object]]:
    return [dataclasses.asdict(t) for t in trials]
