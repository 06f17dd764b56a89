"""The properties tell SmolLM2-135M from its random-init twin in the directions the research reports."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits

from geomcheck.properties import REGISTRY

pytestmark = pytest.mark.real_model

MIDDLE = tuple(range(5, 25))


def _capture(ref: str, bos: bool | None = None):
    from geomcheck.capture import hooks as capture
    from geomcheck.capture import inputs
    from geomcheck.models import loader as models

    lm = models.load(ref)
    spec = inputs.InputSpec(mode="corpus", sequences=16, tokens=128, seed=0, bos=bos)
    batch = inputs.build_batch(
        spec, lm.tokenizer, bos_token_id=lm.bos_token_id, default_bos=lm.default_bos, vocab_size=lm.model.config.vocab_size
    )
    plan = capture.CapturePlan(
        position_means=("blocks.*.resid_post",),
        sampled=("blocks.*.attn_out", "blocks.*.mlp_out", "blocks.*.resid_post"),
        samples=1024,
        batch_size=8,
        verify=False,
        progress=False,
    )
    return capture.capture(lm, batch, plan)


@pytest.fixture(scope="module")
def pair(smollm2):
    """(trained, random-init) activations on the same 16 x 128 corpus tokens."""
    return _capture("smollm2-135m"), _capture("random:smollm2-135m")


@pytest.fixture(scope="module")
def pair_with_bos(smollm2):
    """The same with BOS in front, which SmolLM2's tokenizer does not add (the default follows the tokenizer)."""
    return _capture("smollm2-135m", bos=True), _capture("random:smollm2-135m", bos=True)


@pytest.fixture(autouse=True)
def one_blas_thread():
    """The machines running this suite are shared; oversubscribed BLAS threads make the probes several times slower."""
    with threadpool_limits(1):
        yield


def measure(name: str, acts, layers: tuple[int, ...] | None = None, **params):
    prop = REGISTRY[name]
    result = prop.measure(acts, prop.params(**params), layers or tuple(range(acts.n_blocks)))
    assert result.valid, result.reason
    return result


def test_attn_and_mlp_separate_along_top_components_only_when_trained(pair):
    trained, random = (measure("attn_mlp_separation", acts, MIDDLE, max_points=4000) for acts in pair)
    assert trained.metric("probe_pca_accuracy").aggregate > 0.8
    assert random.metric("probe_pca_accuracy").aggregate < 0.7
    assert trained.metric("fisher_ratio").aggregate > 10 * random.metric("fisher_ratio").aggregate


def test_first_position_is_massive_in_middle_blocks_only_when_trained(pair):
    trained, random = (measure("first_position_norm", acts) for acts in pair)
    assert trained.metric("ratio").aggregate > 20
    assert 9 <= trained.metric("onset_layer").aggregate <= 13
    assert random.metric("ratio").aggregate < 2
    assert random.metric("onset_layer").aggregate != random.metric("onset_layer").aggregate  # NaN: no onset


def test_random_twin_has_more_position_structure_than_trained(pair_with_bos):
    # Measured, and opposite to a naive reading of the paper: a random block with near-uniform attention
    # mixes in the prefix mean (the BOS state) whose weight shrinks as 1/t, so position organises the
    # random twin more. Without BOS the first token is as ordinary as the rest and both shares are ~0.005.
    trained, random = (measure("sequence_structure", acts) for acts in pair_with_bos)
    assert random.metric("position_variance_share").aggregate > 2 * trained.metric("position_variance_share").aggregate
    assert random.metric("early_tail").aggregate > 1.5 * trained.metric("early_tail").aggregate


def test_norm_grows_late_spikes_and_collapses_at_final_norm_when_trained(pair):
    trained, random = (measure("layer_norm_growth", acts) for acts in pair)
    assert trained.metric("growth_ratio").aggregate > 1.3 * random.metric("growth_ratio").aggregate
    assert trained.metric("late_growth").aggregate > 3 > random.metric("late_growth").aggregate
    assert trained.metric("last_block_spike").aggregate > 1.1 > random.metric("last_block_spike").aggregate
    assert trained.metric("final_norm_drop").aggregate < 0.2 < random.metric("final_norm_drop").aggregate


def test_the_residual_stream_uses_more_directions_when_trained(pair):
    # A random-init stack collapses its tokens toward a few directions with depth; training keeps many in use
    # from block 10 on (blocks 2-8 of SmolLM2 use only 2-7: measured, see geomcheck/properties/effective_rank.py).
    trained, random = (measure("effective_rank", acts) for acts in pair)
    ours, twin = trained.metric("participation_ratio"), random.metric("participation_ratio")
    assert ours.aggregate > 1.5 * twin.aggregate
    assert all(ours.per_layer[b] > 2 * twin.per_layer[b] for b in range(10, 29))
    assert all(twin.per_layer[b + 1] <= twin.per_layer[b] * 1.02 for b in range(29))  # the twin's collapse, block by block
