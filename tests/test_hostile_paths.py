"""Untrusted names (spec names, check ids, model references) never steer a write outside its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from geomcheck.errors import SpecError, SpecProblem
from geomcheck.gate import baseline
from geomcheck.models.loader import resolve
from geomcheck.paths import (
    UnsafePathError,
    confined,
    is_safe_name,
    printable,
    safe_component,
)
from geomcheck.spec.schema import parse_spec

CHECK = "checks:\n  - property: first_position_norm\n    expect: {min: 1}\n"
HOSTILE_NAMES = [
    "/tmp/x",
    "../../../../tmp/x",
    "..",
    ".",
    ".hidden",
    "a/b",
    "a\\b",
    "x" * 256,
    "nul\x00byte",
    "line\nbreak",
    "esc\x1b[2Jclear",
    "\ud800lone",
    "-starts-with-dash",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_spec_names_are_rejected_at_validation(name):
    text = f'name: "{name.encode("unicode_escape").decode("ascii")}"\n{CHECK}'
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/hostile.yaml")
    (problem,) = info.value.problems
    assert problem.key_path == "name" and problem.line == 1
    assert "\n" not in str(problem).split("\n  hint")[0] and "\x1b" not in str(problem) and "\x00" not in str(problem)


@pytest.mark.parametrize("check_id", ["../x", "/abs", "..", "a b", "x" * 200])
def test_hostile_check_ids_are_rejected(check_id):
    text = f'checks:\n  - id: "{check_id}"\n    property: first_position_norm\n    expect: {{min: 1}}\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/hostile.yaml")
    assert [p.key_path for p in info.value.problems] == ["checks[0].id"]


def test_ordinary_names_still_pass():
    spec = parse_spec(f"name: llama-family_v2.1\n{CHECK}", "specs/ok.yaml")
    assert spec.name == "llama-family_v2.1"


def test_a_spec_file_name_that_is_not_safe_gets_a_safe_default_name():
    spec = parse_spec(CHECK, "specs/we ird..yaml")
    assert is_safe_name(spec.name) and spec.name.startswith("we-ird")


@pytest.mark.parametrize("text", ["..", ".", "", "/", "a/../../b", "\x00", "é" * 300])
def test_safe_component_is_one_safe_component(text):
    name = safe_component(text)
    assert is_safe_name(name) and name not in (".", "..") and "/" not in name


def test_distinct_unsafe_texts_do_not_collide():
    assert safe_component("a/b") != safe_component("a:b")


def test_model_keys_are_safe_for_paths_that_end_in_dot_dot(tmp_path):
    (tmp_path / "sub").mkdir()
    for text in (str(tmp_path / "sub" / ".."), str(tmp_path / "sub" / ".")):
        key = resolve(text).key
        assert is_safe_name(key), key


def test_baseline_path_stays_in_root_whatever_it_is_given(tmp_path):
    root = tmp_path / "baselines"
    for model_key, spec_name in [("..", "x"), ("m", "../../x"), ("/tmp", "x"), ("m", "/etc/passwd")]:
        path = baseline.baseline_path(root, model_key, spec_name)
        assert path.resolve().is_relative_to(root.resolve()) and path.parent.parent == root


def test_confined_refuses_a_symlink_that_leads_out(tmp_path):
    root, outside = tmp_path / "baselines", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "model")
    with pytest.raises(UnsafePathError, match="outside"):
        confined(root, "model", "spec.json")
    with pytest.raises(UnsafePathError):
        baseline.baseline_path(root, "model", "spec")


def test_control_characters_in_problems_are_escaped():
    problem = SpecProblem("specs/x.yaml", 3, 1, "checks[0].a\nspecs/x.yaml:1:1: forged", "bad\x1b[2J", "hint\r")
    text = str(problem)
    assert text.count("\n") == 1 and "\x1b" not in text and "\r" not in text
    assert "\\x0a" in text and "\\x1b" in text
    assert printable("plain text ✓") == "plain text ✓"


def test_control_characters_in_unknown_keys_are_escaped():
    text = 'checks:\n  - property: first_position_norm\n    expect: {min: 1}\n    "bad\\nspecs/evil.yaml:1:1: ok": 1\n'
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/k.yaml")
    rendered = str(info.value)
    assert all(line.startswith(("specs/k.yaml:", "  hint:")) for line in rendered.splitlines()), rendered


def test_update_with_hostile_names_writes_nothing_outside(tmp_path, tiny_dirs, monkeypatch):
    """End to end: the spec is refused before anything runs, so nothing is written anywhere."""
    from geomcheck.spec.schema import load_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "evil.yaml").write_text(f"name: ../../../../{tmp_path.name}-escaped\n{CHECK}")
    with pytest.raises(SpecError):
        load_spec(tmp_path / "evil.yaml")
    assert not list(Path(tmp_path.parent).glob(f"{tmp_path.name}-escaped*"))
