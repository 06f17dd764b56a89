"""The shipped specs: they load, the GPT-2 spec's helix checks see a planted helix, and the LLaMA
spec passes on the packaged SmolLM2 and fails on its random-init twin; specs/smollm2.yaml applies to SmolLM2 only."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import save_tiny

from geomcheck.models import loader as models
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import load_spec, load_specs

SPECS = Path(__file__).resolve().parent.parent / "specs"


def test_shipped_specs_load():
    names = {spec.name: spec for spec in load_specs([SPECS])}
    assert set(names) == {"decoder", "gpt2", "llama", "smollm2"}
    assert all(check.reason for spec in names.values() for check in spec.checks), "every check cites its evidence"


def outcomes(session: GeomSession, spec, ref: str, prefix: str = "") -> dict[str, str]:
    return {check.id: session.run_check(spec, check, ref).outcome.status for check in spec.checks if check.id.startswith(prefix)}


def plant_helix(loaded: models.LoadedModel, cycles: float = 1.5, seed: int = 0) -> None:
    """Write a noisy helix into the learned position table: (cos, sin) pairs at a few frequencies."""
    wpe = loaded.base.wpe.weight
    n, width = wpe.shape
    t = np.arange(n) / n
    rng = np.random.default_rng(seed)
    table = 0.02 * rng.standard_normal((n, width))
    for pair, (harmonic, scale) in enumerate(zip((1, 2, 3), (1.0, 0.6, 0.4))):
        table[:, 2 * pair] += scale * np.cos(2 * np.pi * harmonic * cycles * t)
        table[:, 2 * pair + 1] += scale * np.sin(2 * np.pi * harmonic * cycles * t)
    with torch.no_grad():
        wpe.copy_(torch.from_numpy(table).float())


@pytest.fixture(scope="module")
def gpt2_1024(tmp_path_factory) -> str:
    return str(save_tiny(tmp_path_factory.mktemp("gpt2-1024") / "gpt2", "gpt2", n_positions=1024))


def test_gpt2_spec_sees_a_planted_helix_and_not_a_random_table(gpt2_1024):
    spec = load_spec(SPECS / "gpt2.yaml")
    session = GeomSession()
    random_table = outcomes(session, spec, gpt2_1024, "positional_helix")
    planted = models.load(gpt2_1024)
    plant_helix(planted)
    session.add_model("planted", planted)
    helix = outcomes(session, spec, "planted", "positional_helix")
    assert helix == {"positional_helix": "passed", "positional_helix_period": "passed"}
    assert random_table["positional_helix"] == "failed"


def test_gpt2_spec_skips_on_llama_models(tiny_dirs):
    spec = load_spec(SPECS / "gpt2.yaml")
    assert set(outcomes(GeomSession(), spec, str(tiny_dirs["llama"])).values()) == {"skipped"}


DECODER_SPECS = ("decoder.yaml", "llama.yaml", "smollm2.yaml")


def spec_outcomes(session: GeomSession, ref: str) -> dict[str, str]:
    """Status of every check of the decoder specs, keyed ``spec/check``."""
    statuses = {}
    for name in DECODER_SPECS:
        spec = load_spec(SPECS / name)
        statuses.update({f"{spec.name}/{check}": status for check, status in outcomes(session, spec, ref).items()})
    return statuses


@pytest.mark.real_model
def test_decoder_specs_pass_on_smollm2_and_every_check_fails_on_its_random_twin(smollm2):
    session = GeomSession()
    session.add_model("smollm2-135m", smollm2)
    trained = spec_outcomes(session, "smollm2-135m")
    assert set(trained.values()) == {"passed"}, trained
    twin = spec_outcomes(session, "random:smollm2-135m")
    assert set(twin.values()) == {"failed"}, twin


@pytest.mark.real_qwen
def test_decoder_specs_pass_on_qwen_and_every_check_fails_on_its_random_twin(qwen):
    """The same specs, unchanged, on a second model of another depth (24 blocks) and width (896)."""
    session = GeomSession()
    session.add_model("qwen2.5-coder-0.5b", qwen)
    trained = spec_outcomes(session, "qwen2.5-coder-0.5b")
    family = {key: status for key, status in trained.items() if not key.startswith("smollm2/")}
    assert set(family.values()) == {"passed"}, trained
    # specs/smollm2.yaml holds what did not transfer to Qwen2.5: it makes no claim on it.
    assert {status for key, status in trained.items() if key.startswith("smollm2/")} == {"skipped"}, trained
    twin = spec_outcomes(session, "random:qwen2.5-coder-0.5b")
    assert {status for key, status in twin.items() if not key.startswith("smollm2/")} == {"failed"}, twin


@pytest.mark.real_gemma
def test_decoder_spec_passes_on_gemma3_and_every_check_fails_on_its_random_twin(gemma):
    """The third family (Gemma-3: 18 blocks, d = 640, sandwich norms, BOS added): decoder.yaml holds; the
    LLaMA-layout specs make no claim on it."""
    session = GeomSession()
    session.add_model("gemma3-270m", gemma)
    trained = spec_outcomes(session, "gemma3-270m")
    assert {status for key, status in trained.items() if key.startswith("decoder/")} == {"passed"}, trained
    assert {status for key, status in trained.items() if not key.startswith("decoder/")} == {"skipped"}, trained
    twin = spec_outcomes(session, "random:gemma3-270m")
    assert {status for key, status in twin.items() if key.startswith("decoder/")} == {"failed"}, twin
