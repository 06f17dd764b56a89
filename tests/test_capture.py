import numpy as np
import pytest
import torch

from geomcheck.capture import hooks as capture
from geomcheck.capture import inputs
from geomcheck.capture.sites import Point, Site
from geomcheck.errors import SiteError, VerificationError
from geomcheck.models import loader as models


def batch_for(lm, sequences=5, tokens=12, seed=0):
    spec = inputs.InputSpec(sequences=sequences, tokens=tokens, seed=seed)
    return inputs.build_batch(spec, lm.tokenizer, bos_token_id=lm.bos_token_id, default_bos=lm.default_bos, vocab_size=lm.model.config.vocab_size)


def reference_states(lm, ids):
    """Every site computed independently of geomcheck's hooks, straight from the modules."""
    with torch.inference_mode():
        out = lm.base(input_ids=torch.from_numpy(ids), output_hidden_states=True)
    return out.hidden_states


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_every_block_verifies_and_norms_match_hidden_states(tiny_dirs, family):
    lm = models.load(str(tiny_dirs[family]))
    batch = batch_for(lm)
    acts = capture.capture(lm, batch, capture.CapturePlan(batch_size=2, samples=20))
    assert [v.block for v in acts.verification] == [0, 1, 2]
    assert max(v.rms_error for v in acts.verification) < 1e-5
    hidden = reference_states(lm, batch.ids)
    for block in range(lm.n_blocks - 1):
        expected = torch.linalg.vector_norm(hidden[block + 1], dim=-1).numpy()
        np.testing.assert_allclose(acts.site(block, Point.RESID_POST).norms, expected, rtol=1e-5)
    np.testing.assert_allclose(acts.site(None, Point.EMBED).norms, torch.linalg.vector_norm(hidden[0], dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(acts.site(None, Point.FINAL_NORM).norms, torch.linalg.vector_norm(hidden[-1], dim=-1).numpy(), rtol=1e-5)
    assert (Site(None, Point.POS_EMBED) in acts.sites) == (family == "gpt2")
    assert (acts.position_table is not None) == (family == "gpt2")


def test_samples_and_position_means_are_exact(tiny_dirs):
    lm = models.load(str(tiny_dirs["llama"]))
    batch = batch_for(lm, sequences=6, tokens=10)
    acts = capture.capture(lm, batch, capture.CapturePlan(batch_size=4, samples=25))
    hidden = reference_states(lm, batch.ids)
    stats = acts.site(1, Point.RESID_POST)
    seq, pos = acts.sample_index[:, 0], acts.sample_index[:, 1]
    np.testing.assert_allclose(stats.samples, hidden[2][seq, pos].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.position_mean, hidden[2].double().mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_results_do_not_depend_on_batch_size(tiny_dirs):
    lm = models.load(str(tiny_dirs["gpt2"]))
    batch = batch_for(lm, sequences=6)
    a = capture.capture(lm, batch, capture.CapturePlan(batch_size=1, samples=30))
    b = capture.capture(lm, batch, capture.CapturePlan(batch_size=6, samples=30))
    for site in a.sites:
        np.testing.assert_allclose(a.sites[site].norms, b.sites[site].norms, rtol=1e-5)
        if a.sites[site].samples is not None:
            np.testing.assert_allclose(a.sites[site].samples, b.sites[site].samples, rtol=1e-4, atol=1e-6)


def test_glob_selection_hooks_only_selected_sites(tiny_dirs):
    lm = models.load(str(tiny_dirs["llama"]))
    acts = capture.capture(lm, batch_for(lm), capture.CapturePlan(sites=("blocks.*.attn_out", "final_norm")))
    assert sorted(s.name for s in acts.sites) == ["blocks.0.attn_out", "blocks.1.attn_out", "blocks.2.attn_out", "final_norm"]
    with pytest.raises(SiteError, match="matches no site"):
        capture.capture(lm, batch_for(lm), capture.CapturePlan(sites=("blocks.*.nothing",)))


def test_hooks_are_removed_after_capture(tiny_dirs):
    lm = models.load(str(tiny_dirs["llama"]))
    count = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in lm.model.modules())  # noqa: E731
    reference_states(lm, batch_for(lm).ids)  # transformers adds its own hooks on the first forward
    before = count()
    capture.capture(lm, batch_for(lm))
    assert count() == before


def test_a_broken_component_fails_verification_naming_the_block(tiny_dirs):
    lm = models.load(str(tiny_dirs["llama"]))
    mlp = lm.base.layers[1].mlp
    # A hook that changes the MLP output after geomcheck's capture point sees it breaks the sum.
    lm.base.layers[1].register_forward_hook(lambda module, args, output: output * 1.01)
    with pytest.raises(VerificationError, match="block 1") as info:
        capture.capture(lm, batch_for(lm))
    assert info.value.rms_error > 1e-5 and mlp is not None


def test_hidden_states_check_runs_once_per_model_and_table(tiny_dirs):
    """The pass compared with hidden_states proves the table's mapping; weights and inputs do not change it."""
    from dataclasses import replace

    lm = models.load(str(tiny_dirs["llama"]))
    asked = []
    forward = lm.base.forward
    lm.base.forward = lambda *args, **kwargs: asked.append(kwargs.get("output_hidden_states", False)) or forward(*args, **kwargs)
    plan = capture.CapturePlan(batch_size=2, samples=20)
    capture.capture(lm, batch_for(lm), plan)
    assert asked == [True, False, False, False]  # the short check, then three batches without hidden states
    asked.clear()
    capture.capture(lm, batch_for(lm, seed=1), plan)
    assert asked == [False, False, False]
    asked.clear()
    capture.capture(replace(lm, table=replace(lm.table, note="a second table")), batch_for(lm), plan)
    assert asked == [True, False, False, False]


def test_hidden_states_check_catches_a_table_that_reads_the_wrong_block_output(tiny_dirs):
    """A table whose every hook agrees with itself but whose 'blocks' are not the ones transformers reports."""
    from dataclasses import replace

    lm = models.load(str(tiny_dirs["llama"]))
    layers = lm.base.layers
    lm.base.shadow = torch.nn.ModuleList([layers[0], layers[0], layers[0]])  # block 0 three times
    wrong = replace(lm, table=replace(lm.table, blocks="shadow"))
    original = lm.base.forward
    # The shadow blocks run too (after the model's own layers), so the hooks see a consistent stream.
    def forward(*args, **kwargs):
        out = original(*args, **kwargs)
        x = out.hidden_states[0] if out.hidden_states is not None else lm.base.embed_tokens(kwargs["input_ids"])
        position_embeddings = lm.base.rotary_emb(x, torch.arange(x.shape[1])[None])
        for block in lm.base.shadow:
            x = block(x, position_embeddings=position_embeddings)
        return out

    lm.base.forward = forward
    with pytest.raises(VerificationError, match="hidden_states"):
        capture.capture(wrong, batch_for(lm), capture.CapturePlan(batch_size=2, samples=20))


def test_nonfinite_activations_are_counted_not_raised(tiny_dirs):
    lm = models.load(str(tiny_dirs["llama"]))
    with torch.no_grad():
        lm.base.layers[2].mlp.down_proj.weight[0, 0] = float("nan")
    acts = capture.capture(lm, batch_for(lm), capture.CapturePlan(verify=False))
    assert acts.site(2, Point.MLP_OUT).nonfinite > 0
    assert acts.site(0, Point.MLP_OUT).nonfinite == 0


def test_sequence_longer_than_context_is_refused():
    from geomcheck.errors import InputError

    with pytest.raises(InputError, match="context"):
        inputs.check_budget(inputs.InputSpec(sequences=1, tokens=200), context_length=128)


@pytest.mark.real_model
def test_real_model_every_block_verifies(smollm2):
    acts = capture.capture(smollm2, batch_for(smollm2, sequences=2, tokens=64), capture.CapturePlan(batch_size=2, samples=64))
    assert len(acts.verification) == 30
    assert max(v.rms_error for v in acts.verification) < 1e-5
    assert len(acts.sites) == 30 * 6 + 2


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_verification_does_not_disturb_what_is_recorded(tiny_dirs, family):
    """Verification runs modules again (the final norm); none of that may reach the reducers."""
    lm = models.load(str(tiny_dirs[family]))
    batch = batch_for(lm, sequences=5)
    checked = capture.capture(lm, batch, capture.CapturePlan(batch_size=2, samples=20, verify=True))
    plain = capture.capture(lm, batch, capture.CapturePlan(batch_size=2, samples=20, verify=False))
    for site, stats in checked.sites.items():
        other = plain.sites[site]
        assert np.array_equal(stats.norms, other.norms), site.name
        assert np.array_equal(stats.max_abs, other.max_abs), site.name
        if stats.position_sum is not None:
            assert np.array_equal(stats.position_sum, other.position_sum), site.name
