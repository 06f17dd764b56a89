"""Issue 22, items 5 and 6: numbers no geomcheck file holds, nesting without end, and output folders committed as links.

Every malformed file is a clear error or (trajectory records, trainer_state.json) is measured again; a
default output folder (reports/, baselines/, a trajectory cache) that is a link is refused before any
work, and nothing is written through it. ``benchmarks/hostile_files_campaign.py`` runs the same cases as
separate processes; its table is in docs/security.md.
"""

from __future__ import annotations

import json
import os

import pytest

from geomcheck import cli
from geomcheck.gate import baseline
from geomcheck.gate.codec import BaselineError
from geomcheck.safe_read import JSONValueError, strict_json
from geomcheck.trajectory import cache
from geomcheck.trajectory.discover import _step as step_of

SPEC = "name: s\ninputs: {sequences: 8, tokens: 12}\nchecks:\n  - id: ratio\n    property: first_position_norm\n    expect: {min: 0.0}\n"


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": Infinity}', "non-finite number Infinity"),
    ('{"a": NaN}', "non-finite number NaN"),
    ('{"a": 1e999}', "too large to be finite"),
    ('{"a": 1' + "0" * 5000 + "}", "integer of 5001 digits"),
])
def test_numbers_no_geomcheck_file_holds_are_refused(text, message):
    with pytest.raises(JSONValueError, match=message):
        strict_json(text)
    assert strict_json('{"a": 1.5e3, "b": -12, "c": [0.25]}') == {"a": 1500.0, "b": -12, "c": [0.25]}


def test_a_baseline_with_such_a_number_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"format": 3, "checks": {}}).replace("{", '{"zz": 1e999, ', 1))
    with pytest.raises(BaselineError, match=r"s.json: holds the number 1e999.*--geom-update"):
        baseline.read(path)


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"zz": Infinity}', "{" + '"a": 1' + "0" * 5000 + "}"])
def test_a_damaged_trajectory_record_is_measured_again(tmp_path, content, capsys):
    path = tmp_path / "record.json"
    path.write_text(content)
    assert cache.read(path) is None
    assert "measuring again" in capsys.readouterr().err


@pytest.mark.parametrize("state", ["[" * 100_000 + "]" * 100_000, '{"global_step": Infinity}', '{"global_step": 1' + "0" * 5000 + "}"])
def test_a_damaged_trainer_state_leaves_the_step_to_the_folder_name(tmp_path, state):
    folder = tmp_path / "checkpoint-40"
    folder.mkdir()
    (folder / "trainer_state.json").write_text(state)
    assert step_of(str(folder)) == 40


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "s.yaml").write_text(SPEC)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    return tmp_path, outside


@pytest.mark.parametrize(("folder", "extra"), [("reports", ["--no-baseline"]), ("baselines", ["--update", "--no-report"])])
def test_a_default_output_folder_committed_as_a_link_is_refused_before_any_work(project, tiny_dirs, folder, extra, capsys):
    root, outside = project
    os.symlink(outside, root / folder)
    assert cli.main(["run", f"--model={tiny_dirs['llama']}", "--spec=specs", *extra]) == 3
    err = capsys.readouterr().err
    assert f"{folder} is a link to {outside}" in err and "does not write through a link" in err and "capturing" not in err
    assert list(outside.iterdir()) == []


def test_a_folder_named_on_the_command_line_is_written_even_through_a_link(project, tiny_dirs):
    root, outside = project
    os.symlink(outside, root / "chosen")
    assert cli.main(["run", f"--model={tiny_dirs['llama']}", "--spec=specs", "--no-baseline", "--report=chosen/"]) == 0
    assert [p.suffix for p in outside.iterdir()] == [".html"]


def test_a_trajectory_cache_committed_as_a_link_is_refused(project, tiny_dirs, capsys):
    import shutil

    root, outside = project
    for step in (1, 2):
        shutil.copytree(tiny_dirs["llama"], root / "runs" / f"checkpoint-{step}")
    (root / "reports").mkdir()
    os.symlink(outside, root / "reports" / "t.cache")
    assert cli.main(["trajectory", "runs", "--spec=specs/s.yaml", "--report", "reports/t.html"]) == 3
    assert "t.cache is a link to" in capsys.readouterr().err and list(outside.iterdir()) == []


def test_a_tokenizer_beyond_the_model_vocabulary_is_an_input_error():
    from geomcheck.capture.inputs import InputSpec, build_batch
    from geomcheck.errors import InputError

    class Words:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [599] * 4096}

    with pytest.raises(InputError, match="token id 599, but the model's vocabulary has 512 entries"):
        build_batch(InputSpec(sequences=2, tokens=8), Words(), bos_token_id=None, default_bos=False, vocab_size=512)
