"""Spec inputs that used to crash collection or run silently unseeded: nulls, and text sources that are symlink loops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geomcheck.capture.inputs import check_budget
from geomcheck.errors import SpecError
from geomcheck.spec.schema import load_spec, parse_spec

CHECK = "checks:\n  - property: first_position_norm\n    expect: {min: 1}\n"


def collect(text: str, root: Path | None = None) -> None:
    """What the pytest collector does with a spec before any model loads."""
    spec = parse_spec(text, "specs/in.yaml", root=root)
    for check in spec.checks:
        check_budget(check.effective_inputs(spec), context_length=None)


@pytest.mark.parametrize("key", ["tokens", "sequences", "seed", "mode", "source"])
@pytest.mark.parametrize("level", ["spec", "check"])
def test_null_where_a_value_is_required_is_refused_at_its_key(key, level):
    if level == "spec":
        text = f"inputs: {{{key}: ~}}\n{CHECK}"
        where = (1, f"inputs.{key}")
    else:
        text = f"checks:\n  - property: first_position_norm\n    inputs: {{{key}: ~}}\n    expect: {{min: 1}}\n"
        where = (3, f"checks[0].inputs.{key}")
    with pytest.raises(SpecError) as info:  # tokens/sequences: TypeError in check_budget; seed: an unseeded run
        collect(text)
    (problem,) = info.value.problems
    assert (problem.line, problem.key_path) == where
    assert "must not be null" in problem.message


def test_bos_null_still_means_the_family_default():
    spec = parse_spec(f"inputs: {{bos: ~, seed: 3}}\n{CHECK}")
    assert spec.base_inputs().bos is None and spec.base_inputs().seed == 3


def test_seeds_stay_seeded_when_inherited():
    spec = parse_spec("inputs: {seed: 7}\nchecks:\n  - property: first_position_norm\n    inputs: {tokens: 8}\n    expect: {min: 1}\n")
    assert spec.checks[0].effective_inputs(spec).seed == 7


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("")
    os.symlink("loop_b", tmp_path / "loop_a")
    os.symlink("loop_a", tmp_path / "loop_b")
    return tmp_path


def test_a_text_source_that_is_a_symlink_loop_is_a_spec_problem(project):
    text = f"inputs: {{mode: text, source: loop_a}}\n{CHECK}"
    with pytest.raises(SpecError) as info:  # was RuntimeError from Path.resolve
        collect(text, root=project)
    (problem,) = info.value.problems
    assert (problem.line, problem.key_path) == (1, "inputs.source") and "symlink loop" in problem.message


def test_a_loop_behind_a_folder_link_is_a_spec_problem(project):
    (project / "texts").symlink_to(project / "loop_a")
    with pytest.raises(SpecError, match="symlink loop"):
        collect(f"inputs: {{mode: text, source: texts/x.txt}}\n{CHECK}", root=project)


def test_a_spec_file_that_is_a_symlink_loop_cannot_be_read(project, monkeypatch):
    monkeypatch.chdir(project)
    with pytest.raises(SpecError) as info:
        load_spec(project / "loop_a")
    assert "cannot be read" in str(info.value)


def test_a_text_folder_with_loops_inside_still_reads(project):
    from geomcheck.capture.inputs import read_text_source

    folder = project / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("some words")
    os.symlink("../loop_a", folder / "loop.txt")
    os.symlink("..", folder / "up")
    spec = parse_spec(f"inputs: {{mode: text, source: texts}}\n{CHECK}", root=project)
    assert read_text_source(spec.base_inputs().source) == "some words"
