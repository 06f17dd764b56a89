"""What a new user trips over (issue #15): messages, skips, progress and timing, through pytest and the CLI."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

import geomcheck.pytest_plugin.collect  # noqa: F401  (shared module objects for pytester's in-process runs)
import geomcheck.report  # noqa: F401

SPEC = """\
name: tiny
inputs: {sequences: 4, tokens: 16}
checks:
  - id: norms_positive
    property: first_position_norm
    expect: {min: 0.0}
"""
GPT2_ONLY = """\
name: gpt2-only
applies_to: {families: [gpt2]}
inputs: {sequences: 4, tokens: 16}
checks:
  - id: helix
    property: positional_helix
    expect: {max: 0.5}
  - id: norms
    property: first_position_norm
    expect: {min: 0.0}
"""


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/tiny": SPEC, "specs/gpt2only": GPT2_ONLY})
    return pytester


def test_a_spec_without_a_model_says_a_model_is_needed(project):
    result = project.runpytest_subprocess("-p", "no:cacheprovider", "specs/tiny.yaml")
    err = result.stderr.str()
    assert "not found" not in err + result.stdout.str()
    assert "needs a model" in err and "--geom-model=smollm2-135m specs/tiny.yaml" in err


def test_a_misspelled_alias_gets_did_you_mean(project):
    result = project.runpytest("--geom-model=smolm2-135m", "--geom-report=none", "specs/tiny.yaml")
    assert "did you mean smollm2-135m?" in result.stdout.str()


def test_a_spec_for_other_models_is_skipped_with_the_reason_in_the_default_summary(project, tiny_dirs):
    result = project.runpytest("--geom-model=" + str(tiny_dirs["llama"]), "--geom-no-baseline", "--geom-report=reports/")
    out = result.stdout.str()
    assert "specs/gpt2only.yaml skipped for" in out and "applies_to" in out
    reports = sorted(p.name for p in (project.path / "reports").iterdir())
    assert len(reports) == 1 and "tiny" in reports[0], reports  # no page for the spec whose every check skipped


def test_check_times_leave_out_the_shared_capture(tiny_dirs, tmp_path, monkeypatch):
    from geomcheck import runner
    from geomcheck.spec.schema import load_spec

    real = runner.capture

    def slow_capture(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "capture", slow_capture)
    path = tmp_path / "tiny.yaml"
    path.write_text(SPEC)
    spec = load_spec(path)
    session = runner.GeomSession()
    result = session.run_check(spec, spec.checks[0], str(tiny_dirs["llama"]))
    (record,) = session.captures().values()
    assert record.seconds >= 1.0
    assert result.seconds < 1.0


def _run_in_terminal(argv: list[str], cwd: Path, timeout: float = 240) -> str:
    """Run a command with a pseudo-terminal as stdout and stderr, as a person at a terminal would."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "CI": ""}
    process = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("command", ["pytest", "geomcheck"])
def test_capture_shows_progress_on_a_terminal(command, tiny_dirs, tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.yaml").write_text(SPEC)
    model = str(tiny_dirs["llama"])
    if command == "pytest":
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--geom-model={model}", "--geom-report=none", "--geom-no-baseline"]
    else:
        argv = [sys.executable, "-m", "geomcheck.cli", "run", "--model", model, "--spec", "specs/tiny.yaml", "--no-report", "--no-baseline"]
    out = _run_in_terminal(argv, tmp_path)
    assert "block 3/3" in out, out[-3000:]  # the tiny model's three blocks, counted live
    assert "captured in" in out


def test_dequantizing_outside_a_terminal_is_not_silent(tmp_path, capsys):
    from geomcheck.progress import heartbeat

    with heartbeat("geomcheck: dequantizing", every=0.2):
        time.sleep(0.7)
    err = capsys.readouterr().err
    assert err.count("geomcheck: dequantizing: working") >= 2 and "done in" in err


@pytest.mark.parametrize("case", ["bad reference", "bad spec"])
def test_a_failing_start_imports_neither_torch_nor_scikit_learn(project, case):
    """Before any check runs, a bad --geom-model or spec is answered without the heavy imports (about 4 s of start-up)."""
    project.makefile(".yaml", **{"specs/broken": "checks:\n  - property: first_position_norm\n    expect: {minn: 3}\n"})
    model, spec = ("smolm2-135m", "specs/tiny.yaml") if case == "bad reference" else ("smollm2-135m", "specs/broken.yaml")
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider", f"--geom-model={model}",
                           "--geom-report=none", spec], cwd=project.path, capture_output=True, text=True, timeout=300)
    assert ("did you mean" if case == "bad reference" else "did you mean 'min'") in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "sklearn", "scipy", "umap", "plotly"}, sorted(imported & {"torch", "sklearn"})
