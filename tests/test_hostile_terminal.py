"""Spec text that reaches a terminal or a report is shown, never obeyed (hostile-inputs issue, item 7 in part)."""

from __future__ import annotations

import pytest

from geomcheck.errors import SpecError
from geomcheck.paths import printable
from geomcheck.spec.expect import errored
from geomcheck.spec.schema import parse_spec

ESCAPES = "\x1b[2J\x1b[1;1H FAKE PASSED \u202e dlrow \u2066x\u2069"


def check_with(reason: str):
    text = f'checks:\n  - property: first_position_norm\n    reason: "{reason}"\n    expect: {{min: 0}}\n'
    return parse_spec(text, "specs/x.yaml").checks[0]


def test_a_reason_with_terminal_escapes_and_bidi_overrides_is_printed_escaped():
    check = check_with("\\e[2J\\e[1;1H FAKE PASSED \\u202e dlrow \\u2066x\\u2069")
    assert check.reason == ESCAPES  # kept as written: the spec means what it says
    details = errored(check, model="m", reason="r").details
    (line,) = [d for d in details if d.startswith("reason:")]
    assert "\x1b" not in line and "\u202e" not in line and "\u2066" not in line
    assert "\\x1b[2J" in line and "\\u202e" in line


@pytest.mark.parametrize("key", ["reason", "description"])
def test_unpaired_surrogates_are_refused_at_validation_with_file_and_line(key):
    text = ('description: "a \\ud800 b"\n' if key == "description" else "") + "checks:\n  - property: first_position_norm\n"
    if key == "reason":
        text += '    reason: "a \\udfff b"\n'
    text += "    expect: {min: 0}\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/x.yaml")
    (problem,) = info.value.problems
    assert problem.path == "specs/x.yaml" and problem.key_path.endswith(key) and "unpaired surrogate" in problem.message
    assert problem.line == (1 if key == "description" else 3)


def test_printable_keeps_ordinary_text_and_unicode():
    assert printable("growth ≥ 2.5 — fine, ünïcödé") == "growth ≥ 2.5 — fine, ünïcödé"


def test_a_checkpoint_folder_named_with_a_newline_cannot_forge_a_trajectory_line(tmp_path):
    from geomcheck.trajectory.discover import discover

    folder = tmp_path / "ckpt\nREGRESSED in the latest checkpoint: nothing"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (checkpoint,) = discover([str(folder)])
    assert "\n" not in checkpoint.label and "\\x0a" in checkpoint.label
