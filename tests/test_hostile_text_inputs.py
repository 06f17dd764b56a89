"""Text and dataset inputs a pull request can commit: every file read must really lie inside the project.

The attack these tests replay: a folder named as a `mode: text` source holds a link to
/proc/self/environ (or to any file outside the project); before, the link was followed and the CI
job's environment was tokenized into the report's sample text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geomcheck.capture import inputs as inputs_module
from geomcheck.capture.inputs import read_text_source, text_source_files
from geomcheck.cli import main
from geomcheck.errors import InputError, SpecError
from geomcheck.safe_read import UnsafeReadError, read_confined
from geomcheck.spec.schema import parse_spec

SECRET = "geomcheck-test-secret-7f3a9c"
CHECK = "checks:\n  - property: first_position_norm\n    expect: {min: 0}\n"
TEXT_INPUTS = "inputs: {mode: text, source: inputs, sequences: 2, tokens: 16}\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "inputs").mkdir(parents=True)
    (root / "pyproject.toml").write_text("")
    (root / "inputs" / "a.txt").write_text("some plain words for the model to read\n" * 4)
    return root


def outside_file(tmp_path: Path) -> Path:
    secret = tmp_path / "outside" / "credentials.txt"
    secret.parent.mkdir()
    secret.write_text(f"AWS_SECRET_ACCESS_KEY={SECRET}\n")
    return secret


def spec_problem(text: str, root: Path):
    with pytest.raises(SpecError) as info:
        parse_spec(text, root / "specs" / "s.yaml", root=root)
    (problem,) = info.value.problems
    return problem


@pytest.mark.parametrize("target", ["/proc/self/environ", "outside"])
def test_a_link_inside_a_text_folder_that_leads_out_is_a_spec_problem_at_the_source_key(project, tmp_path, target):
    link_to = outside_file(tmp_path) if target == "outside" else Path(target)
    os.symlink(link_to, project / "inputs" / "notes.txt")
    problem = spec_problem(TEXT_INPUTS + CHECK, project)
    assert (problem.line, problem.key_path) == (1, "inputs.source")
    assert "notes.txt" in problem.message
    assert ("kernel or device file" if target.startswith("/proc") else "lies outside") in problem.message


def test_a_link_planted_after_validation_is_refused_when_read(project, tmp_path):
    spec = parse_spec(TEXT_INPUTS + CHECK, project / "specs" / "s.yaml", root=project)
    inputs = spec.base_inputs()
    assert inputs.root == str(project.resolve())
    assert "plain words" in read_text_source(inputs.source, inputs.root)
    os.symlink(outside_file(tmp_path), project / "inputs" / "late.txt")
    with pytest.raises(InputError, match="lies outside"):
        read_text_source(inputs.source, inputs.root)


def test_a_link_inside_the_project_is_read(project):
    (project / "more").mkdir()
    (project / "more" / "b.txt").write_text("linked words")
    os.symlink(project / "more" / "b.txt", project / "inputs" / "b.txt")
    spec = parse_spec(TEXT_INPUTS + CHECK, project / "specs" / "s.yaml", root=project)
    assert "linked words" in read_text_source(spec.base_inputs().source, spec.base_inputs().root)


def test_a_folder_named_directly_still_confines_the_links_inside_it(project, tmp_path):
    os.symlink(outside_file(tmp_path), project / "inputs" / "notes.txt")
    with pytest.raises(InputError, match="lies outside"):
        read_text_source(str(project / "inputs"))


def test_kernel_files_are_refused_even_under_a_root_that_holds_them():
    with pytest.raises(InputError, match="kernel or device file"):
        read_text_source("/proc/self/environ", root="/")
    with pytest.raises(UnsafeReadError, match="kernel or device file"):
        read_confined(Path("/proc/self/environ"), Path("/"), 1 << 20)


def test_a_fifo_is_refused_without_blocking(project):
    os.mkfifo(project / "inputs" / "pipe.txt")
    problem = spec_problem(TEXT_INPUTS + CHECK, project)
    assert "not a regular file (a FIFO)" in problem.message
    with pytest.raises(UnsafeReadError, match="a FIFO"):  # opened non-blocking: no writer needed to return
        read_confined(project / "inputs" / "pipe.txt", project, 1 << 20)


def test_a_huge_sparse_file_is_refused_before_it_is_read(project):
    with open(project / "inputs" / "huge.txt", "wb") as handle:
        handle.truncate(6 << 30)  # 6 GB of holes: no disk used, MemoryError if read
    problem = spec_problem(TEXT_INPUTS + CHECK, project)
    assert "over the limit of" in problem.message and "per file" in problem.message


def test_the_total_over_all_files_is_capped(project, monkeypatch):
    monkeypatch.setattr(inputs_module, "TEXT_LIMITS", inputs_module.ReadLimits(file_bytes=1000, total_bytes=200, files=10))
    (project / "inputs" / "b.txt").write_text("x" * 150)
    with pytest.raises(InputError, match="over the limit of 200"):
        text_source_files(str(project / "inputs"), str(project))


def test_too_many_files_is_an_error_not_a_stall(project, monkeypatch):
    monkeypatch.setattr(inputs_module, "TEXT_LIMITS", inputs_module.ReadLimits(file_bytes=1000, total_bytes=10_000, files=3))
    for i in range(5):
        (project / "inputs" / f"n{i}.txt").write_text("w")
    with pytest.raises(InputError, match="more than 3"):
        text_source_files(str(project / "inputs"), str(project))


def test_a_local_dataset_path_is_confined_like_text(project, tmp_path):
    outside = outside_file(tmp_path).parent
    os.symlink(outside, project / "data")
    problem = spec_problem("inputs: {mode: dataset, source: data}\n" + CHECK, project)
    assert problem.key_path == "inputs.source" and "lies outside" in problem.message
    (project / "local_data").mkdir()
    os.symlink(outside / "credentials.txt", project / "local_data" / "train.txt")
    problem = spec_problem("inputs: {mode: dataset, source: local_data}\n" + CHECK, project)
    assert "lies outside" in problem.message


def test_a_hub_dataset_id_is_left_to_the_hub(project):
    spec = parse_spec("inputs: {mode: dataset, source: someone/some-dataset}\n" + CHECK, project / "specs" / "s.yaml", root=project)
    assert spec.base_inputs().source == "someone/some-dataset"


# ---------------------------------------------------------------- end to end, as a CI job would run it


def write_spec(project: Path) -> Path:
    spec = project / "specs" / "texts.yaml"
    spec.parent.mkdir(exist_ok=True)
    spec.write_text("name: texts\n" + TEXT_INPUTS + CHECK)
    return spec


def test_geomcheck_run_with_a_link_to_the_environment_fails_and_leaks_nothing(project, tiny_dirs, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.chdir(project)
    os.symlink("/proc/self/environ", project / "inputs" / "notes.txt")
    spec = write_spec(project)
    code = main(["run", f"--model={tiny_dirs['llama']}", f"--spec={spec}", "--no-baseline", "--report=reports"])
    out, err = capsys.readouterr()
    assert code != 0
    assert "notes.txt" in err and "kernel or device file" in err
    assert SECRET not in out + err
    assert not (project / "reports").exists()


def distinctive_word(model_dir: Path) -> str:
    """A word of the tiny tokenizer's vocabulary that the report's own scripts do not contain."""
    from plotly.offline import get_plotlyjs
    from transformers import AutoTokenizer

    vocab = AutoTokenizer.from_pretrained(model_dir).get_vocab()
    script = get_plotlyjs()
    return max((w for w in vocab if w.isalpha() and w not in script), key=lambda w: (len(w), w))


@pytest.mark.parametrize("shown", [False, True])
def test_reports_show_text_input_tokens_only_when_the_command_line_asks(project, tiny_dirs, monkeypatch, capsys, shown):
    word = distinctive_word(tiny_dirs["llama"])
    (project / "inputs" / "a.txt").write_text(f"{word} the " * 64)
    monkeypatch.chdir(project)
    spec = write_spec(project)
    report = project / "reports" / "r.html"
    argv = ["run", f"--model={tiny_dirs['llama']}", f"--spec={spec}", "--no-baseline", f"--report={report}"]
    assert main(argv + (["--report-input-text"] if shown else [])) == 0, capsys.readouterr()
    page = report.read_text()
    assert (word in page) is shown
    assert ("not shown: the text comes from the checked repository" in page) is not shown


def test_pytest_with_a_link_to_the_environment_reports_one_error_and_leaks_nothing(pytester, tiny_dirs, monkeypatch):
    import geomcheck.pytest_plugin.collect  # noqa: F401  (shared with pytester's in-process run)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("CI", raising=False)
    project = pytester.path
    (project / "inputs").mkdir()
    (project / "inputs" / "a.txt").write_text("plain words\n")
    os.symlink("/proc/self/environ", project / "inputs" / "notes.txt")
    write_spec(project)
    result = pytester.runpytest(f"--geom-model={tiny_dirs['llama']}", "--geom-report=none", "-p", "no:cacheprovider")
    text = result.stdout.str() + result.stderr.str()
    assert result.ret not in (0, 5)
    assert text.count("kernel or device file") == 1, text
    assert SECRET not in text
