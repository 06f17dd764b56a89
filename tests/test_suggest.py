"""``geomcheck suggest``: the spec it writes passes on the model and fails on its random twin under ``geomcheck run``.

Two models: a tiny random LLaMA with a planted first-position outlier (its BOS embedding row scaled
up, so position 0 dominates every block), whose random twin has none; and the packaged SmolLM2-135M
against its twin, with the shipped decoder spec as the template.
"""

from pathlib import Path

import pytest
import torch
import yaml
from tiny import save_tiny
from transformers import AutoModelForCausalLM

from geomcheck import cli
from geomcheck.capture.inputs import InputSpec, build_batch
from geomcheck.gate.damage import reduce_inputs
from geomcheck.models import loader as models
from geomcheck.spec.schema import load_spec
from geomcheck.suggest import SuggestOptions, spec_text, suggest

SPECS = Path(__file__).resolve().parent.parent / "specs"
TEMPLATE = """\
name: template
inputs: {mode: corpus, sequences: 8, tokens: 32, bos: true}
checks:
  - id: outlier
    property: first_position_norm
    expect: {on: per_layer, min: 1000, mostly: 0.9}
    reason: a threshold copied from a model that is not this one
  - id: ratio_range
    property: first_position_norm
    expect: {between: [1, 3]}
    reason: ranges are not fitted
"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    directory = save_tiny(tmp_path_factory.mktemp("suggest") / "planted", "llama")
    model = AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        model.model.embed_tokens.weight[model.config.bos_token_id].mul_(300.0)
    model.save_pretrained(directory)
    return directory


def test_draws_of_one_input_set_share_no_sequence(planted):
    loaded = models.load(str(planted))
    first, second = (build_batch(InputSpec(sequences=8, tokens=32, draw=draw), loaded.tokenizer, bos_token_id=loaded.bos_token_id,
                                 default_bos=False, vocab_size=loaded.model.config.vocab_size) for draw in (0, 1))
    assert not {tuple(row) for row in first.ids} & {tuple(row) for row in second.ids}
    assert "draw 2" in second.description


def test_the_suggested_spec_passes_on_the_model_and_fails_on_its_twin(planted, tmp_path, capsys):
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    out = tmp_path / "suggested.yaml"
    assert cli.main(["suggest", "--model", str(planted), "--spec", str(template), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "dropped " in printed.out and "ratio_range: a range bound" in printed.out
    written = yaml.safe_load(out.read_text())
    (outlier,) = [check for check in written["checks"] if check["id"] == "outlier"]
    assert 1 < outlier["expect"]["min"] < 1000  # refitted: the template's 1000 would fail the model
    assert "Fitted by geomcheck suggest" in outlier["reason"] and "disjoint draw" in outlier["reason"]
    assert outlier["inputs"] == {"mode": "corpus", "sequences": 8, "tokens": 32, "seed": 0, "bos": True}
    run = ["run", "--spec", str(out), "--no-baseline", "--no-report"]
    assert cli.main([*run, "--model", str(planted)]) == 0
    assert cli.main([*run, "--model", f"random:{planted}"]) == 1


def test_a_template_that_separates_nothing_writes_nothing(tmp_path, capsys):
    plain = save_tiny(tmp_path / "plain", "llama")
    template = tmp_path / "template.yaml"
    template.write_text(TEMPLATE)
    out = tmp_path / "suggested.yaml"
    # The model as its own twin: identical values, nothing to put a bound between. (Two random inits of one
    # config are not such a pair: the BOS row's norm differs between them, on every input, and suggest says so.)
    assert cli.main(["suggest", "--model", str(plain), "--twin", str(plain), "--spec", str(template), "--out", str(out)]) == 1
    assert not out.exists()
    assert "no check separated" in capsys.readouterr().err


def test_suggest_on_smollm2_writes_a_spec_its_twin_fails(smollm2, tmp_path):
    specs = [reduce_inputs(load_spec(SPECS / "decoder.yaml"), 16, 128)]
    options = SuggestOptions(model="smollm2-135m", out=tmp_path / "smollm2.yaml")
    suggestions = suggest(options, specs, progress=lambda line: None)
    kept = [s for s in suggestions if s.fitted is not None]
    assert kept, [s.why for s in suggestions]
    options.out.write_text(spec_text(options, suggestions))
    run = ["run", "--spec", str(options.out), "--no-baseline", "--no-report"]
    assert cli.main([*run, "--model", "smollm2-135m"]) == 0
    assert cli.main([*run, "--model", "random:smollm2-135m"]) == 1
