"""Damaged checkpoints: the builders damage a copy only, and the llama spec plus a baseline catch each damage on SmolLM2.

The real-model tests are a reduced run of benchmarks/gate_calibration.py (whose full-size tables are in
docs/gating.md): a baseline of the clean SmolLM2-135M recorded with specs/llama.yaml capped at 16 x 128
tokens per input set, then the unchanged model, a harmless change and damaged copies measured on
*fresh* inputs (other input seeds) against it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from geomcheck import calibration
from geomcheck.gate import damage
from geomcheck.models.loader import LoadedModel, load
from geomcheck.spec.schema import Spec, load_spec

SPEC = Path(__file__).resolve().parent.parent / "specs" / "llama.yaml"
SMOLLM2_SPEC = SPEC.with_name("smollm2.yaml")  # SmolLM2's own checks: the final norm's drop, repeated tokens
SEQUENCES, TOKENS = 16, 128


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
    spec = damage.reduce_inputs(load_spec(SMOLLM2_SPEC), 8, 64)
    assert {(s.sequences, s.tokens) for s in (c.effective_inputs(spec) for c in spec.checks)} == {(8, 64)}
    assert {c.effective_inputs(spec).mode for c in spec.checks} == {"corpus", "repeated_token"}


# ---------------------------------------------------------------- the gate's error rates on SmolLM2, reduced


@pytest.fixture(scope="module")
def recorded(smollm2, tmp_path_factory) -> tuple[Spec, Path]:
    """The llama spec at 16 x 128 tokens per input set and the clean model's baseline, recorded at input seed 0."""
    spec = damage.reduce_inputs(load_spec(SPEC), SEQUENCES, TOKENS)
    with threadpool_limits(2):
        path = calibration.record(spec, smollm2, tmp_path_factory.mktemp("calibration"))
    assert path.is_file()
    return spec, path


real_model = pytest.mark.real_model


@real_model
@pytest.mark.parametrize("seed", [1, 2])
def test_the_unchanged_model_under_fresh_inputs_raises_no_alarm(recorded, smollm2, seed):
    spec, path = recorded
    unchanged = calibration.Condition("unchanged", "unchanged", calibration.unchanged)
    result = calibration.trial(spec, smollm2, path, unchanged, seed=seed, label=f"seed {seed}")
    assert result.alarms == () and result.fixed_failures == ()
    assert result.values_tested >= len(spec.checks)


@real_model
def test_a_bfloat16_round_trip_raises_no_alarm(recorded, smollm2):
    spec, path = recorded
    harmless = calibration.Condition("bf16", "harmless", calibration.round_trip(torch.bfloat16))
    assert calibration.trial(spec, smollm2, path, harmless, seed=1, label="seed 1").alarms == ()


@real_model
def test_heavy_weight_noise_is_caught_under_fresh_inputs(recorded, smollm2):
    """Under fresh inputs the gate's power is modest (docs/gating.md): noise at 0.3 x std is caught, subtler damage is not."""
    spec, path = recorded
    condition = calibration.Condition("noise 0.3", "damage", lambda lm: damage.add_noise(lm, 0.3, seed=0))
    assert calibration.trial(spec, smollm2, path, condition, seed=1, label="seed 1").alarms


@real_model
def test_a_bfloat16_round_trip_on_the_baseline_s_own_inputs_is_paired_and_quiet(recorded, smollm2):
    """The usual CI run reads the baseline's token ids: the test is paired, and the floors keep a harmless change quiet."""
    spec, path = recorded
    harmless = calibration.Condition("bf16", "harmless", calibration.round_trip(torch.bfloat16))
    assert calibration.trial(spec, smollm2, path, harmless, seed=0, label="seed 0").alarms == ()


@real_model
def test_a_removed_final_norm_is_caught_under_fresh_inputs_by_the_smollm2_spec(smollm2, tmp_path):
    """The family spec has no bound on the final norm's own drop (it does not transfer to Qwen2.5);
    SmolLM2's own spec has one, and its gated value alarms when the final norm is gone."""
    spec = damage.reduce_inputs(load_spec(SMOLLM2_SPEC), SEQUENCES, TOKENS)
    with threadpool_limits(2):
        path = calibration.record(spec, smollm2, tmp_path)
    removed = calibration.Condition("final norm removed", "damage", damage.remove_final_norm)
    result = calibration.trial(spec, smollm2, path, removed, seed=1, label="seed 1")
    assert "final_norm_drop" in result.alarms and "final_norm_drop" in result.fixed_failures
    quiet = calibration.trial(spec, smollm2, path, calibration.Condition("unchanged", "unchanged", calibration.unchanged), seed=1, label="seed 1")
    assert quiet.alarms == () and quiet.fixed_failures == ()


@real_model
def test_a_swap_of_two_middle_blocks_alarms_on_the_baseline_s_own_inputs(recorded, smollm2):
    """Local damage (+1.9 % next-token loss at this size) leaves every aggregate inside its floor; the paired
    profile test sees the two blocks move, and names them."""
    spec, path = recorded
    middle = smollm2.n_blocks // 2
    swapped = calibration.Condition("swap", "damage", lambda lm: damage.swap_blocks(lm, middle - 1, middle))
    result = calibration.trial(spec, smollm2, path, swapped, seed=0, label="seed 0")
    assert "norm_growth" in result.alarms and "massive_first_position" in result.alarms


@real_model
def test_a_q8_0_round_trip_on_the_baseline_s_own_inputs_is_quiet(recorded, smollm2):
    spec, path = recorded
    harmless = calibration.Condition("Q8_0", "harmless", calibration.q8_0_round_trip)
    assert calibration.trial(spec, smollm2, path, harmless, seed=0, label="seed 0").alarms == ()


@real_model
def test_smollm2_spec_applies_to_smollm2_saved_under_any_name(smollm2):
    """smollm2.yaml is matched on what the model is (its config), not on the folder it was saved to."""
    spec = load_spec(SMOLLM2_SPEC)
    assert spec.matches("checkpoints/candidate", smollm2.table.family, smollm2.model.config)
    assert spec.matches("/tmp/gate/models/resaved", smollm2.table.family, smollm2.model.config)


@real_model
def test_compare_names_the_swapped_blocks_first(smollm2):
    """geomcheck compare on two swapped middle blocks: the paired profile names block 14 or 15 first, and
    --fail-on-drift turns it into exit 1 though no check flips."""
    from geomcheck.compare_run import compare
    from geomcheck.gate.compare import summary_table
    from geomcheck.runner import GeomSession

    spec = damage.reduce_inputs(load_spec(SPEC), SEQUENCES, TOKENS)
    middle = smollm2.n_blocks // 2
    session = GeomSession()
    session.add_model("clean", smollm2)
    session.add_model("swapped", damage.swap_blocks(smollm2, middle - 1, middle))
    norm_checks = spec.model_copy(update={"checks": tuple(c for c in spec.checks if c.property == "layer_norm_growth")})
    comparison = compare(session, [norm_checks], "clean", "swapped", fail_on_drift=True)
    moved = [row.moved_blocks[0] for row in comparison.rows if row.moved_blocks]
    assert moved and moved[0].where in (f"median_norm block {middle - 1}", f"median_norm block {middle}")
    assert comparison.exit_code == 1 and "blocks that moved past their floors" in summary_table(comparison)


# ---------------------------------------------------------------- the conversion bugs of the zoo, on a tiny model


def test_conversion_bugs_change_only_what_they_name(tiny):
    clean = _parameters(tiny)
    swapped = _parameters(damage.swap_query_key(tiny, 0, 2))
    assert torch.equal(swapped["model.layers.0.self_attn.q_proj.weight"], clean["model.layers.2.self_attn.q_proj.weight"])
    assert torch.equal(swapped["model.layers.0.self_attn.v_proj.weight"], clean["model.layers.0.self_attn.v_proj.weight"])
    transposed = _parameters(damage.transpose_output(tiny, (1,)))
    assert torch.equal(transposed["model.layers.1.self_attn.o_proj.weight"], clean["model.layers.1.self_attn.o_proj.weight"].T)
    reset = damage.reset_norms(tiny, 1).table.block_modules(damage.reset_norms(tiny, 1).base)[1]
    assert torch.all(reset.input_layernorm.weight == 1)
    eps = damage.norm_epsilon(tiny, 0.5)
    assert eps.base.layers[0].input_layernorm.variance_epsilon == 0.5 and tiny.base.layers[0].input_layernorm.variance_epsilon != 0.5
    base = damage.rotary_base(tiny, 2.0)
    ratio = float(base.base.rotary_emb.inv_freq[1] / tiny.base.rotary_emb.inv_freq[1])
    assert ratio < 1  # a larger base, lower frequencies
    corrupted = _parameters(damage.corrupt_block(tiny, 2, 0.5, seed=0))
    changed = {name for name, p in corrupted.items() if not torch.equal(p, clean[name])}
    assert changed and all(name.startswith("model.layers.2.") for name in changed)
    assert all(torch.equal(p, clean[name]) for name, p in tiny.model.named_parameters())  # the original untouched


def test_q8_0_round_trip_is_close_but_not_exact(tiny):
    restored = _parameters(calibration.q8_0_round_trip(tiny))
    weight = "model.layers.0.mlp.up_proj.weight"
    clean = dict(tiny.model.named_parameters())[weight].detach()
    error = float((restored[weight] - clean).abs().max() / clean.abs().max())
    assert 0 < error < 0.01


def test_next_token_loss_change_is_paired_and_zero_for_the_same_model(tiny):
    import numpy as np

    from geomcheck.gate.loss import loss_change, sequence_losses

    ids = np.random.default_rng(0).integers(3, 100, size=(4, 16))
    clean = sequence_losses(tiny, ids)
    same = loss_change(clean, sequence_losses(tiny, ids))
    assert same.relative == 0 and same.relative_se == 0
    noisy = loss_change(clean, sequence_losses(damage.add_noise(tiny, 1.0, seed=0), ids))
    assert noisy.relative != 0 and noisy.relative_se > 0 and "next-token loss" in noisy.describe()
