"""A gate that did not run must not pass: --strict (and CI=true) fails a run without baselines or without a single
measured check; the summary names the baseline file it looked for and pytest's rootdir; a bare path option warns."""

from __future__ import annotations

import pytest

from geomcheck import cli

GPT2_ONLY = """\
name: gpt2only
applies_to: {families: [gpt2]}
inputs: {sequences: 8, tokens: 12}
checks:
  - id: ratio
    property: first_position_norm
    expect: {min: 0.0}
"""
ANY = GPT2_ONLY.replace("name: gpt2only\napplies_to: {families: [gpt2]}\n", "name: any\n")


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "specs").mkdir()
    return tmp_path


def test_every_check_skipped_warns_and_fails_under_strict(project, tiny_dirs, capsys):
    (project / "specs" / "gpt2only.yaml").write_text(GPT2_ONLY)
    run = ["run", f"--model={tiny_dirs['llama']}", "--spec=specs", "--no-report", "--no-baseline"]
    assert cli.main(run) == 0
    captured = capsys.readouterr()
    assert "every check was skipped" in captured.err and "--strict (or CI=true) makes this fail" in captured.err
    assert captured.out.rstrip().splitlines()[-1] == "geomcheck run: 1 skipped; OK (exit 0)"
    assert cli.main([*run, "--strict"]) == 3
    assert capsys.readouterr().out.rstrip().splitlines()[-1].endswith("(exit 3)")


def test_a_missing_baseline_is_named_and_fails_under_strict(project, tiny_dirs, capsys):
    (project / "specs" / "any.yaml").write_text(ANY)
    run = ["run", f"--model={tiny_dirs['llama']}", "--spec=specs", "--no-report"]
    assert cli.main(run) == 0
    out = capsys.readouterr().out
    looked_for = project.resolve() / "baselines" / tiny_dirs["llama"].name / "any.json"
    assert f"none (no baseline file; looked for {looked_for})" in out
    assert cli.main([*run, "--strict"]) == 1
    assert "no baseline for check 'ratio'" in capsys.readouterr().out


def test_pytest_names_the_baseline_root_and_warns_about_a_bare_model_path(pytester, tiny_dirs, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/any": ANY})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--geom-model", str(tiny_dirs["llama"]), "--geom-report=none")
    # The bare path and the project share an ancestor, which pytest took as its rootdir: baselines are looked up there.
    result.stdout.fnmatch_lines(["*baselines looked up under * (pytest rootdir *)",
                                 f"*warning: --geom-model {tiny_dirs['llama']} (with a space) is also a path argument to pytest, "
                                 f"which moved its rootdir to *; write --geom-model={tiny_dirs['llama']}"])
    quiet = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--geom-model={tiny_dirs['llama']}", "--geom-report=none")
    quiet.stdout.fnmatch_lines([f"*baselines looked up under {pytester.path}*baselines (pytest rootdir {pytester.path})"])
    assert "with a space" not in quiet.stdout.str()
    strict = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--geom-model={tiny_dirs['llama']}", "--geom-report=none",
                                           "--geom-strict")
    assert strict.ret == 1


BEYOND = """\
name: beyond
inputs: {sequences: 8, tokens: 12}
checks:
  - id: fine
    property: first_position_norm
    expect: {min: 0.0}
  - id: beyond
    property: first_position_norm
    layers: [20, 40]
    expect: {min: 0.0}
"""


def test_layers_beyond_the_model_are_an_error_at_the_layers_line_before_any_capture(project, tiny_dirs, capsys):
    (project / "specs" / "beyond.yaml").write_text(BEYOND)
    assert cli.main(["run", f"--model={tiny_dirs['llama']}", "--spec=specs", "--no-report", "--no-baseline"]) == 3
    captured = capsys.readouterr()
    assert "specs/beyond.yaml:9: layers: block index 20 is out of range for a model with 3 blocks" in captured.err
    assert "capturing" not in captured.err and "PASSED" not in captured.out  # not even the check that fits ran
