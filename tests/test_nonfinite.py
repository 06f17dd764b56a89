"""NaN/inf weights: the checks that read the affected sites fail with site and count; the rest run; the report is written."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from tiny import save_tiny

from geomcheck.models.adapters.verify import ResidualCheck
from geomcheck.errors import VerificationError
from geomcheck.runner import GeomSession, RunOptions, run_cli
from geomcheck.spec.schema import parse_spec

# (family, weight name fragment, value, blocks left finite)
VARIANTS = {
    "mlp_nan": ("llama", "layers.1.mlp.down_proj.weight", math.nan, {0}),
    "embed_inf": ("llama", "embed_tokens.weight", math.inf, set()),
    "final_norm_nan": ("llama", "model.norm.weight", math.nan, {0, 1, 2}),
    "pos_nan": ("gpt2", "wpe.weight", math.nan, set()),
    "attn_inf": ("gpt2", "h.2.attn.c_proj.weight", math.inf, {0, 1}),
}

SPEC = """\
name: nonfinite
inputs: {sequences: 4, tokens: 16}
checks:
  - {id: first_block, property: first_position_norm, layers: [0, 0], expect: {min: 0}}
  - {id: all_blocks, property: first_position_norm, expect: {min: 0}}
  - {id: growth, property: layer_norm_growth, expect: {min: 0}}
  - {id: structure, property: sequence_structure, params: {early_positions: 2}, expect: {min: -1}}
  - {id: separation, property: attn_mlp_separation, params: {folds: 2}, expect: {min: 0}}
"""


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nonfinite-models")
    made = {}
    for name, (family, fragment, value, _) in VARIANTS.items():
        directory = save_tiny(root / name, family)
        weights = load_file(directory / "model.safetensors")
        key = next(k for k in weights if fragment in k)
        tensor = weights[key].clone()
        tensor.view(-1)[::7] = value
        weights[key] = tensor
        save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
        made[name] = directory
    return made


@pytest.mark.parametrize("name", list(VARIANTS))
def test_nonfinite_weights_fail_the_affected_checks_and_the_rest_still_run(poisoned, name):
    spec = parse_spec(SPEC, "specs/nonfinite.yaml")
    session = GeomSession()
    # Before: VerificationError at the first check, and nothing after it ran.
    results = {check.id: session.run_check(spec, check, str(poisoned[name])).outcome for check in spec.checks}
    assert len(results) == len(spec.checks)
    bad = [outcome for outcome in results.values() if outcome.status == "failed"]
    assert bad, name
    for outcome in bad:
        assert "non-finite activations (NaN or inf) at " in outcome.headline and " token vectors)" in outcome.headline
    finite_blocks = VARIANTS[name][3]
    if 0 in finite_blocks:
        assert results["first_block"].status == "passed"


def test_unverifiable_blocks_are_recorded_not_raised(poisoned):
    from geomcheck.capture.hooks import CapturePlan, capture
    from geomcheck.capture.inputs import InputSpec, build_batch
    from geomcheck.models.loader import load

    loaded = load(str(poisoned["attn_inf"]))
    batch = build_batch(InputSpec(sequences=2, tokens=8), loaded.tokenizer, bos_token_id=1, default_bos=False, vocab_size=512)
    acts = capture(loaded, batch, CapturePlan())
    errors = {v.block: v.rms_error for v in acts.verification}
    assert errors[0] < 1e-5 and errors[1] < 1e-5 and math.isnan(errors[2])


def test_a_finite_mismatch_is_still_a_capture_fault():
    verifier = ResidualCheck(2, tolerance=1e-5)
    verifier.record(0, math.nan, "parts")
    verifier.record(0, 5.0, "parts")  # once unverifiable, the block stays so
    assert 0 in verifier.unverifiable and np.isnan(verifier.worst[0])
    with pytest.raises(VerificationError):
        verifier.record(1, 0.5, "parts")


def test_the_run_finishes_with_a_report_and_exit_1(poisoned, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "nonfinite.yaml").write_text(SPEC)
    report = tmp_path / "out" / "report.html"
    code = run_cli(RunOptions(models=(str(poisoned["mlp_nan"]),), specs=("nonfinite.yaml",), report=str(report)))
    out = capsys.readouterr().out
    assert code == 1  # checks failed; before, the run stopped with 3 and wrote nothing
    assert "PASSED  nonfinite.yaml::first_block" in out and "blocks.1.resid_post" in out
    assert report.is_file() and "non-finite" in report.read_text()
