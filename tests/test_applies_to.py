"""What a spec applies to is decided from what the model is, and a named spec that ran nothing says so.

A model-specific spec used to match a glob against the reference text, so a checkpoint of the model saved
at ``checkpoints/candidate`` skipped every check with exit 0. ``applies_to.config`` compares config.json
values instead, wherever the checkpoint lies.
"""

from __future__ import annotations

import shutil

import pytest

from geomcheck.runner import RunOptions, run_cli
from geomcheck.spec.schema import SpecError, parse_spec

SPEC = """\
name: shaped
applies_to:
  config: {{model_type: llama, hidden_size: {width}}}
inputs: {{sequences: 8, tokens: 12}}
checks:
  - id: ratio
    property: first_position_norm
    expect: {{min: 0.0}}
"""


@pytest.fixture
def candidate(tiny_dirs, tmp_path):
    """The tiny LLaMA saved again under a name that says nothing about what it is."""
    folder = tmp_path / "checkpoints" / "candidate"
    shutil.copytree(tiny_dirs["llama"], folder)
    return folder


def _run(tmp_path, monkeypatch, model, width: int, ci: bool) -> int:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CI", "true") if ci else monkeypatch.delenv("CI", raising=False)
    (tmp_path / "shaped.yaml").write_text(SPEC.format(width=width))
    return run_cli(RunOptions(models=(str(model),), specs=("shaped.yaml",), write_report=False))


def test_a_checkpoint_is_recognised_by_its_config_wherever_it_lies(candidate, tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, candidate, width=32, ci=True) == 0
    assert "PASSED  shaped.yaml::ratio" in capsys.readouterr().out


def test_a_named_spec_that_applies_to_nothing_warns_and_fails_under_ci(candidate, tmp_path, monkeypatch, capsys):
    assert _run(tmp_path, monkeypatch, candidate, width=576, ci=False) == 0
    err = capsys.readouterr().err
    assert "shaped.yaml applies to none of the models run" in err and "config hidden_size is 32, the spec wants 576" in err
    assert _run(tmp_path, monkeypatch, candidate, width=576, ci=True) == 3
    assert "ran no check under --strict / CI=true" in capsys.readouterr().err


@pytest.mark.parametrize(("config", "message"), [
    ("{}", "must name at least one config field"),
    ("{'hidden size': 5}", "is not a config.json field name"),
    ("{hidden_size: [1, 2]}", "applies_to.config.hidden_size"),
])
def test_a_bad_config_constraint_is_a_spec_problem_at_its_line(config, message, tmp_path):
    text = f"applies_to:\n  config: {config}\ninputs: {{sequences: 8, tokens: 12}}\nchecks:\n  - property: first_position_norm\n    expect: {{min: 0}}\n"
    with pytest.raises(SpecError) as error:
        parse_spec(text, tmp_path / "bad.yaml")
    assert "bad.yaml:2:" in str(error.value) and message in str(error.value)


def test_pytest_warns_and_fails_under_ci_when_a_named_spec_ran_nothing(pytester, tiny_dirs, monkeypatch):
    pytester.makefile(".yaml", **{"specs/shaped": SPEC.format(width=576)})
    monkeypatch.delenv("CI", raising=False)
    args = ("-p", "no:cacheprovider", f"--geom-model={tiny_dirs['llama']}", "--geom-spec=specs/shaped.yaml", "--geom-report", "none")
    quiet = pytester.runpytest_subprocess(*args)
    assert quiet.ret == 0
    quiet.stdout.fnmatch_lines(["*warning: specs/shaped.yaml applies to none of the models run*hidden_size is 32*"])
    monkeypatch.setenv("CI", "true")
    loud = pytester.runpytest_subprocess(*args)
    assert loud.ret == 1
    loud.stdout.fnmatch_lines(["*ran no check under --geom-strict / CI=true*"])
