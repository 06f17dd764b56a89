"""The pytest plugin end to end, through pytester, on tiny random-init models saved to disk."""

import textwrap

import pytest

# Imported before pytester's in-process runs, so every run shares these module objects instead of
# importing fresh copies whose classes would not compare equal to the first ones.
import geomcheck.pytest_plugin.collect  # noqa: F401
import geomcheck.report  # noqa: F401

SPEC = """\
name: tiny
inputs:
  sequences: 4
  tokens: 16
checks:
  - id: norms_positive
    property: first_position_norm
    expect: {min: 0.0}
  - id: impossible_ratio
    property: first_position_norm
    expect: {max: 0.0}
    reason: planted failure
  - id: helix
    property: positional_helix
    expect: {max: 0.5}
"""


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/tiny": SPEC})
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


def test_inert_without_a_model(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "specs", "test_plain.py")
    result.assert_outcomes(passed=1)
    assert "tiny.yaml" not in result.stdout.str()


def test_inert_mode_does_not_import_torch(project):
    project.makepyfile(test_imports="import sys\n\ndef test_no_torch():\n    assert 'torch' not in sys.modules\n")
    project.runpytest_subprocess("-p", "no:cacheprovider", "test_imports.py").assert_outcomes(passed=1)


def test_items_are_named_by_spec_check_and_model(project, tiny_dirs):
    model = str(tiny_dirs["llama"])
    result = project.runpytest("--geom-model=" + model, "--collect-only", "-q")
    out = result.stdout.str()
    for check in ("norms_positive", "impossible_ratio", "helix"):
        assert f"specs/tiny.yaml::{check}[llama]" in out
    assert "test_plain" not in out  # without explicit paths only the spec checks run


def test_pass_fail_skip_and_failure_text(project, tiny_dirs):
    model = str(tiny_dirs["llama"])
    result = project.runpytest("--geom-model=" + model, "--geom-report", "none", "-rs")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([f"*first_position_norm[[]{model}[]] = *expected ≤ 0*(specs/tiny.yaml:9)*"])
    assert "planted failure" in out
    assert "Traceback" not in out and "def runtest" not in out
    result.stdout.fnmatch_lines(["*SKIPPED*rotary*"])


def test_gpt2_has_learned_positions_so_helix_runs(project, tiny_dirs):
    result = project.runpytest("--geom-model=" + str(tiny_dirs["gpt2"]), "--geom-report", "none", "-k", "not norms_positive and not impossible_ratio")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("failed", 0) == 1


def test_keyword_selection_and_exitfirst(project, tiny_dirs):
    model = str(tiny_dirs["llama"])
    project.runpytest("--geom-model=" + model, "--geom-report", "none", "-k", "norms_positive").assert_outcomes(passed=1, deselected=2)
    result = project.runpytest("--geom-model=" + model, "--geom-report", "none", "-x", "-k", "not helix")
    assert result.parseoutcomes()["failed"] == 1


def test_junit_xml_carries_measured_values(project, tiny_dirs):
    project.runpytest("--geom-model=" + str(tiny_dirs["llama"]), "--geom-report", "none", "--junitxml=out.xml")
    xml = (project.path / "out.xml").read_text()
    assert 'name="geomcheck_status"' in xml and 'name="geomcheck_value"' in xml


def test_ini_keys_configure_the_plugin(project, tiny_dirs):
    project.makeini(f"[pytest]\ngeom_model = {tiny_dirs['llama']}\ngeom_report = none\n")
    project.runpytest("-k", "norms_positive").assert_outcomes(passed=1, deselected=2)


def test_malformed_spec_is_a_collection_error_with_line(project, tiny_dirs):
    project.makefile(".yaml", **{"specs/broken": "checks:\n  - property: first_position_norm\n    expect: {minn: 3}\n"})
    result = project.runpytest("--geom-model=" + str(tiny_dirs["llama"]), "--geom-report", "none")
    out = result.stdout.str()
    assert "specs/broken.yaml:3:" in out and "did you mean 'min'" in out
    assert "Traceback" not in out


def test_missing_model_is_one_clear_line(project):
    result = project.runpytest("--geom-model=" + "./no/such/model", "--geom-report", "none", "specs")
    assert result.ret != 0
    assert "no such file or directory" in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_xdist_two_workers(project, tiny_dirs):
    pytest.importorskip("xdist")
    result = project.runpytest_subprocess("--geom-model=" + str(tiny_dirs["llama"]), "--geom-model=" + str(tiny_dirs["gpt2"]), "--geom-report", "none", "-n", "2", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    # llama: 1 pass, 1 planted failure, helix skipped (rotary); gpt2: 1 pass, 1 planted failure, helix measured.
    assert outcomes["skipped"] == 1 and outcomes["passed"] + outcomes["failed"] == 5 and outcomes["failed"] >= 2


def test_last_failed_reruns_only_the_failure(project, tiny_dirs):
    model = str(tiny_dirs["llama"])
    project.runpytest("--geom-model=" + model, "--geom-report", "none")
    result = project.runpytest("--geom-model=" + model, "--geom-report", "none", "--lf", "-v")
    result.assert_outcomes(failed=1)


def test_geomcheck_run_cli_exit_codes(project, tiny_dirs):
    from geomcheck.cli import main

    spec = project.path / "specs" / "tiny.yaml"
    assert main(["run", "--model", str(tiny_dirs["llama"]), "--spec", str(spec), "--no-report"]) == 1
    passing = project.path / "ok.yaml"
    passing.write_text(textwrap.dedent(SPEC).split("  - id: impossible_ratio")[0])
    assert main(["run", "--model", str(tiny_dirs["llama"]), "--spec", str(passing), "--no-report"]) == 0
    assert main(["run", "--model", "./missing", "--spec", str(passing), "--no-report"]) == 3


def test_over_budget_spec_is_refused_before_any_model_loads(project):
    project.makefile(".yaml", **{"specs/huge": "inputs: {sequences: 5000, tokens: 1000}\nchecks:\n  - property: first_position_norm\n    expect: {min: 1}\n"})
    # The model does not exist: had it been loaded first, the error would be about the model.
    result = project.runpytest("--geom-model=./never/loaded", "--geom-report", "none", "specs/huge.yaml")
    out = result.stdout.str()
    assert "specs/huge.yaml:3" in out and "5,000,000 tokens, over the budget" in out
    assert "no such file" not in out
