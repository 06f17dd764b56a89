"""Bad option values are one usage line; exit codes keep failed checks, errors, usage and bugs apart (docs/exit-codes.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

import geomcheck.pytest_plugin.collect  # noqa: F401  (shared with pytester's in-process runs)
from geomcheck import cli, option_values
from geomcheck.cli import EXIT_CODES_HELP, main

SPEC = """\
inputs: {sequences: 2, tokens: 8}
checks:
  - {id: positive, property: first_position_norm, expect: {min: 0}}
"""
FAILING = SPEC + "  - {id: impossible, property: first_position_norm, expect: {max: 0}}\n"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "ok.yaml").write_text(SPEC)
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path


BAD_VALUES = [
    (["--seed", "-1"], "--seed: must be an integer seed in [0, 2**63 - 1]; got -1"),
    (["--seed", "abc"], "--seed: must be an integer seed ≥ 0; got 'abc'"),
    (["--device", "bogus"], "--device: must be cpu, cuda, cuda:N, mps or auto; got 'bogus'"),
    (["--device", "cpu:1"], "--device: cpu takes no device index"),
    (["--baseline-dir", "a-file"], "--baseline-dir: 'a-file' is a file"),
    (["--report", "a-file/report.html"], "--report: 'a-file/report.html' cannot be written: "),
    (["--token-budget", "0"], "--token-budget: must be an integer ≥ 1; got 0"),
    (["--dtype", "float64"], "--dtype: invalid choice: 'float64'"),
]


@pytest.mark.parametrize("args, message", BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_one_usage_line_with_exit_2(project, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["run", "--model", "random:gpt2", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err and err.startswith("geomcheck run: error: argument ")


def test_cuda_without_cuda_is_refused_before_loading(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(option_values.OptionValueError, match="sees no CUDA device"):
        option_values.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert option_values.device("cuda:0") == "cuda:0"
    with pytest.raises(option_values.OptionValueError, match="1 CUDA device"):
        option_values.device("cuda:3")


def test_a_folder_without_specs_fails_instead_of_passing_nothing(project, tiny_dirs, capsys):
    (project / "empty").mkdir()
    assert main(["run", "--model", str(tiny_dirs["gpt2"]), "--spec", "empty", "--no-report"]) == 3  # was 0
    err = capsys.readouterr().err
    assert "empty:1:1: (folder): the folder holds no .yaml or .yml spec files" in err


def test_exit_codes_of_run(project, tiny_dirs, capsys):
    model = str(tiny_dirs["gpt2"])
    assert main(["run", "--model", model, "--no-report", "--no-baseline"]) == 0
    (project / "specs" / "ok.yaml").write_text(FAILING)
    assert main(["run", "--model", model, "--no-report", "--no-baseline"]) == 1
    (project / "specs" / "ok.yaml").write_text("checks: [")
    assert main(["run", "--model", model, "--no-report"]) == 3
    (project / "specs" / "ok.yaml").write_text(SPEC)
    assert main(["run", "--model", str(project / "missing"), "--no-report"]) == 3


def test_an_internal_crash_is_exit_4_and_one_line_not_exit_1(project, tiny_dirs, capsys, monkeypatch):
    from geomcheck import runner

    def crash(*args, **kwargs):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setattr(runner.GeomSession, "run_check", crash)
    argv = ["run", "--model", str(tiny_dirs["gpt2"]), "--no-report", "--no-baseline"]
    assert main(argv) == 4  # was an uncaught traceback, exit 1 like a failed check
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: ZeroDivisionError: division by zero" in err and "--traceback" in err
    assert main([*argv, "--traceback"]) == 4
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_exit_3(project, tiny_dirs, capsys, monkeypatch):
    from geomcheck import report

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "reports/x.html")

    monkeypatch.setattr(report, "write_reports", refuse)
    assert main(["run", "--model", str(tiny_dirs["gpt2"]), "--no-baseline"]) == 3
    assert "cannot write the report: Permission denied (reports/x.html)" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    for command in (["run"], ["compare"], []):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        out = capsys.readouterr().out
        assert "exit codes" in out and "4  internal error" in out
    for code in ("0", "1", "2", "3", "4"):
        assert f"\n  {code}  " in EXIT_CODES_HELP
    assert (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_ERROR, cli.EXIT_INTERNAL) == (0, 1, 2, 3, 4)
    table = (Path(__file__).parents[1] / "docs" / "exit-codes.md").read_text()
    assert "| 4 |" in table and "pytest" in table


PYTEST_BAD = [
    ("--geom-seed=abc", "--geom-seed (or ini geom_seed): must be an integer seed ≥ 0; got 'abc'"),
    ("--geom-seed=-3", "--geom-seed (or ini geom_seed): must be an integer seed in [0, 2**63 - 1]; got -3"),
    ("--geom-device=bogus", "--geom-device (or ini geom_device): must be cpu, cuda"),
    ("--geom-dtype=float64", "--geom-dtype (or ini geom_dtype): must be one of float32, bfloat16, float16"),
    ("--geom-token-budget=0", "--geom-token-budget (or ini geom_token_budget): must be an integer ≥ 1; got 0"),
    ("--geom-baseline-dir=a-file", "--geom-baseline-dir (or ini geom_baseline_dir): 'a-file' is a file"),
    ("--geom-report=a-file/r.html", "--geom-report (or ini geom_report): 'a-file/r.html' cannot be written"),
]


@pytest.mark.parametrize("option, message", PYTEST_BAD, ids=[o for o, _ in PYTEST_BAD])
def test_bad_pytest_options_are_one_usage_error_not_internalerror(pytester, monkeypatch, option, message):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/ok": SPEC})
    pytester.path.joinpath("a-file").write_text("x")
    result = pytester.runpytest("--geom-model=random:gpt2", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "INTERNALERROR" not in err + result.stdout.str() and message in err
    assert [line for line in err.splitlines() if line.strip()] == [f"ERROR: {line}" for line in err.replace("ERROR: ", "").splitlines() if line.strip()]


def test_ini_values_are_checked_the_same_way(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/ok": SPEC})
    pytester.makeini("[pytest]\ngeom_token_budget = 0\n")
    result = pytester.runpytest("--geom-model=random:gpt2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "geom_token_budget" in result.stderr.str()
