"""Malformed specs of every kind end in a SpecError whose every problem has a line; nothing else escapes."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Literal

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from geomcheck.errors import SpecError
from geomcheck.properties.base import PropertyDef, PropertyParams
from geomcheck.spec.schema import Spec, parse_spec


class Params(PropertyParams):
    site: Literal["resid_post", "attn_out"] = "resid_post"
    fraction: float = Field(0.5, ge=0, le=1)


def _unused(*args: object) -> None:
    raise AssertionError("not called")


REGISTRY = {"first_position_norm": PropertyDef("first_position_norm", Params, _unused, _unused, "", ("ratio", "norm"), "ratio")}
ROOT = Path(__file__).parent
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINE_BREAKS = re.compile(r"\r\n|[\n\r\x85\u2028\u2029]")

VALID: dict = {
    "name": "fuzz",
    "description": "a valid spec to break",
    "applies_to": {"families": ["llama"], "models": ["smollm2-*"]},
    "inputs": {"mode": "corpus", "sequences": 8, "tokens": 64, "seed": 0, "bos": None},
    "checks": [
        {
            "id": "first",
            "property": "first_position_norm",
            "params": {"site": "resid_post", "fraction": 0.5},
            "layers": "intermediate",
            "inputs": {"mode": "repeated_token", "sequences": 4},
            "expect": {"metric": "ratio", "on": "per_layer", "min": 20, "mostly": 0.9},
            "tolerance": {"abs": 0.0, "rel": 0.1},
            "reason": "because",
        },
        {"id": "second", "property": "first_position_norm", "layers": [2, -3], "expect": {"between": [1, 5]}},
    ],
}
VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)


def outcome(text: str | bytes) -> Spec | SpecError:
    """Parse; any exception but SpecError fails the test, and every problem must carry a plausible line."""
    try:
        return parse_spec(text, "specs/fuzz.yaml", registry=REGISTRY, root=ROOT)
    except SpecError as error:
        decoded = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        last_line = len(LINE_BREAKS.split(decoded)) + 1
        assert error.problems
        for problem in error.problems:
            assert problem.path == "specs/fuzz.yaml"
            assert isinstance(problem.line, int) and 1 <= problem.line <= last_line, str(problem)
            assert isinstance(problem.column, int) and problem.column >= 1, str(problem)
            assert problem.key_path and problem.message
            assert str(problem).startswith(f"specs/fuzz.yaml:{problem.line}:{problem.column}: ")
        return error


def test_the_base_spec_is_valid() -> None:
    assert isinstance(outcome(VALID_TEXT), Spec)


junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(-100, 100), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.text(max_size=8), st.integers(-5, 5), max_size=3),
)


def _paths(data: object, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, prefix + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, prefix + (index,))
    return found


PATHS = _paths(VALID)


def _get(data: object, path: tuple) -> object:
    for part in path:
        data = data[part]  # type: ignore[index]
    return data


MAPPING_PATHS = [()] + [p for p in PATHS if isinstance(_get(VALID, p), dict)]


@FUZZ
@given(
    replacements=st.lists(st.tuples(st.sampled_from(PATHS), junk), max_size=3),
    extra=st.lists(st.tuples(st.sampled_from(MAPPING_PATHS), st.text(min_size=1, max_size=10), junk), max_size=2),
    deletions=st.lists(st.sampled_from(PATHS), max_size=2),
)
def test_wrong_types_unknown_keys_and_missing_keys(replacements: list, extra: list, deletions: list) -> None:
    data = copy.deepcopy(VALID)
    for path, value in replacements:
        try:
            _get(data, path[:-1])[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass
    for path, key, value in extra:
        try:
            target = _get(data, path)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(target, dict):
            target[key] = value
    for path in deletions:
        try:
            del _get(data, path[:-1])[path[-1]]
        except (KeyError, IndexError, TypeError):
            pass
    outcome(yaml.safe_dump(data, sort_keys=False))


@FUZZ
@given(
    low=st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400)),
    high=st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400)),
    form=st.sampled_from(["min: {low}", "max: {high}", "min: {low}, max: {high}", "between: [{low}, {high}]"]),
    mostly=st.floats(),
)
def test_numbers_of_any_size(low: float, high: float, form: str, mostly: float) -> None:
    expect = form.format(low=low, high=high).replace("nan", ".nan").replace("inf", ".inf")
    text = f"checks:\n  - property: first_position_norm\n    expect: {{on: per_layer, mostly: {mostly!r}, {expect}}}\n"
    result = outcome(text.replace("mostly: nan", "mostly: .nan").replace("mostly: inf", "mostly: .inf").replace("mostly: -inf", "mostly: -.inf"))
    if isinstance(result, Spec):
        expectation = result.checks[0].expect
        assert 0 < expectation.fraction <= 1
        for bound in (expectation.lower, expectation.upper):
            assert bound is None or abs(bound) <= 1e12


@FUZZ
@given(
    selector=st.one_of(
        st.text(max_size=12),
        st.lists(st.integers(-(10**30), 10**30), max_size=5),
        st.dictionaries(st.sampled_from(["from", "to", "blocks", "frm"]), st.integers(-50, 50), max_size=3),
    )
)
def test_layer_selectors(selector: object) -> None:
    data = copy.deepcopy(VALID)
    data["checks"][1]["layers"] = selector
    outcome(yaml.safe_dump(data, sort_keys=False))


BREAKERS = ["[", "]", "{", "}", ":", "- ", "&a ", "*a", "!!python/object:os.system ", "!x ", "\t", "'", '"', "\n", "? ", "|", ">", "%", "@", "`", "#", "---\n", "<<: ", "\x00", "\ufeff"]


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, len(VALID_TEXT)), st.sampled_from(BREAKERS)), min_size=1, max_size=4), cut=st.integers(0, len(VALID_TEXT)))
def test_broken_yaml(edits: list, cut: int) -> None:
    text = VALID_TEXT
    for position, insert in sorted(edits, reverse=True):
        text = text[:position] + insert + text[position:]
    outcome(text)
    outcome(VALID_TEXT[:cut])


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    outcome(raw)


@FUZZ
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    outcome(text)


@FUZZ
@given(st.text(alphabet=" \t\n\r#-", max_size=40))
def test_empty_and_blank_files(text: str) -> None:
    assert isinstance(outcome(text), SpecError)
