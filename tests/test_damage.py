"""Damaged checkpoints: the builders damage a copy only, and the llama spec plus a baseline catch each damage on SmolLM2.

The real-model tests record a baseline of the clean SmolLM2-135M in tmp_path with specs/llama.yaml
capped at 8 x 128 tokens per input set (the full-size table is benchmarks/damage_table.py, in
docs/gating.md), then run the clean checkpoint again and each damaged copy against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from geomcheck.gate import baseline, damage
from geomcheck.models.loader import LoadedModel, load
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import Spec, load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "llama.yaml"
SEQUENCES, TOKENS = 8, 128


def _parameters(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in loaded.model.named_parameters()}


# ---------------------------------------------------------------- the builders, on a tiny model


@pytest.fixture(scope="module")
def tiny(tiny_dirs) -> LoadedModel:
    return load(str(tiny_dirs["llama"]))


def test_swap_exchanges_the_blocks_and_leaves_the_original_intact(tiny):
    before = tiny.table.block_modules(tiny.base)
    damaged = damage.swap_blocks(tiny, 0, 2)
    after = damaged.table.block_modules(damaged.base)
    assert tiny.table.block_modules(tiny.base) == before
    assert torch.equal(after[0].mlp.up_proj.weight, before[2].mlp.up_proj.weight)
    assert torch.equal(after[2].mlp.up_proj.weight, before[0].mlp.up_proj.weight)
    assert damaged.ref == tiny.ref and "blocks 0 and 2 swapped" in damaged.notes[-1]


def test_noise_is_seeded_and_scaled_by_each_tensors_std(tiny):
    clean = _parameters(tiny)
    first, again, other = damage.add_noise(tiny, 0.1, seed=1), damage.add_noise(tiny, 0.1, seed=1), damage.add_noise(tiny, 0.1, seed=2)
    assert all(torch.equal(clean[name], p) for name, p in tiny.model.named_parameters())
    for (name, p), q, r in zip(_parameters(first).items(), _parameters(again).values(), _parameters(other).values()):
        assert torch.equal(p, q) and not torch.equal(p, r)
        relative = float((p - clean[name]).std() / (clean[name].std() if clean[name].std() > 0 else clean[name].abs().mean()))
        assert 0.05 < relative < 0.2, name


def test_reinit_touches_one_block_only(tiny):
    clean = _parameters(tiny)
    damaged = damage.reinit_block(tiny, 1, seed=0)
    changed = {name for name, p in damaged.model.named_parameters() if not torch.equal(p, clean[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
    norm = damaged.table.block_modules(damaged.base)[1].input_layernorm.weight
    assert torch.equal(norm, torch.ones_like(norm))


def test_final_norm_removed(tiny):
    damaged = damage.remove_final_norm(tiny)
    assert isinstance(damaged.base.norm, nn.Identity) and not isinstance(tiny.base.norm, nn.Identity)


@pytest.mark.parametrize(("call", "message"), [
    (lambda lm: damage.swap_blocks(lm, 0, 3), "The 'second' parameter of swap_blocks must be a block index in [0, 2]. Got 3 instead."),
    (lambda lm: damage.swap_blocks(lm, 1, 1), "must differ from 'first'"),
    (lambda lm: damage.add_noise(lm, 0), "The 'scale' parameter of add_noise must be a number > 0. Got 0 instead."),
    (lambda lm: damage.reinit_block(lm, -1), "The 'block' parameter of reinit_block must be a block index"),
])
def test_invalid_parameters_are_refused_before_any_copy(tiny, call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        call(tiny)


def test_reduce_inputs_caps_every_input_set():
    spec = damage.reduce_inputs(load_spec(SPEC), 8, 64)
    assert {(s.sequences, s.tokens) for s in (c.effective_inputs(spec) for c in spec.checks)} == {(8, 64)}
    assert {c.effective_inputs(spec).mode for c in spec.checks} == {"corpus", "repeated_token"}


# ---------------------------------------------------------------- detection on SmolLM2


def _run(spec: Spec, name: str, loaded: LoadedModel, root: Path, *, record: bool) -> tuple[set[str], set[str]]:
    """(checks failing their fixed expectation, checks failing against the baseline) for one model."""
    session = GeomSession(baselines=BaselineOptions(root=root, update=record, ci=True))
    session.add_model(name, loaded)
    fixed, gated = set(), set()
    with threadpool_limits(1):
        for check in spec.checks:
            result = session.run_check(spec, check, name)
            assert result.measurement is not None, result.outcome.headline
            if evaluate(check, result.measurement, model=name).status != "passed":
                fixed.add(check.id)
            if result.outcome.status != "passed":
                gated.add(check.id)
    session.finish()
    return fixed, gated


@pytest.fixture(scope="module")
def recorded(smollm2, tmp_path_factory) -> tuple[Spec, Path]:
    """The reduced llama spec and a baseline folder holding the clean model's measurements."""
    spec = damage.reduce_inputs(load_spec(SPEC), SEQUENCES, TOKENS)
    root = tmp_path_factory.mktemp("damage-baselines")
    fixed, _ = _run(spec, "smollm2-135m", smollm2, root, record=True)
    assert not fixed, f"the clean model should meet every fixed expectation at {SEQUENCES} x {TOKENS}: {fixed}"
    assert baseline.baseline_path(root, smollm2.ref.key, spec.name).is_file()
    return spec, root


real_model = pytest.mark.real_model


@real_model
def test_a_clean_rerun_raises_no_alarm(recorded):
    spec, root = recorded
    fixed, gated = _run(spec, "clean", load("smollm2-135m"), root, record=False)
    assert fixed == set() and gated == set()


@real_model
@pytest.mark.parametrize(("name", "build"), [
    ("swap-5-24", lambda lm: damage.swap_blocks(lm, 5, 24)),
    ("swap-14-15", lambda lm: damage.swap_blocks(lm, 14, 15)),
    ("reinit-15", lambda lm: damage.reinit_block(lm, 15)),
    ("no-final-norm", damage.remove_final_norm),
])
def test_structural_damage_is_caught(recorded, smollm2, name, build):
    spec, root = recorded
    fixed, gated = _run(spec, name, build(smollm2), root, record=False)
    assert gated, f"{name} passed every check and matched the baseline"
    assert fixed <= gated
    if name == "no-final-norm":
        assert "final_norm_drop" in fixed


@real_model
@pytest.mark.parametrize("scale", [0.01, 0.1, 0.3])
def test_weight_noise_is_caught(recorded, smollm2, scale):
    spec, root = recorded
    _, gated = _run(spec, f"noise-{scale:g}", damage.add_noise(smollm2, scale, seed=0), root, record=False)
    assert gated, f"noise at {scale:g} x std passed every check and matched the baseline"
    if scale == 0.3:
        assert len(gated) == len(spec.checks)
