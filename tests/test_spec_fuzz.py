"""Malformed specs of every kind end in a SpecError whose every problem has a line; nothing else escapes."""

from __future__ import annotations

import copy
import json
import os
import re
import time
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from geomcheck.capture.inputs import check_budget
from geomcheck.errors import InputError, SpecError
from geomcheck.properties.base import MetricSpec, PropertyDef, PropertyParams
from geomcheck.spec.schema import Spec, parse_spec
from geomcheck.spec.yaml_positions import MAX_SPEC_BYTES, MAX_WRITTEN_NODES
from nested_paths import get, paths


class Params(PropertyParams):
    site: Literal["resid_post", "attn_out"] = "resid_post"
    fraction: float = Field(0.5, ge=0, le=1)


def _unused(*args: object) -> None:
    raise AssertionError("not called")


def _per_layer(name: str) -> MetricSpec:
    """A metric with per-layer values, as the parser sees it (its numbers are never computed here)."""
    return MetricSpec(name, name, "value", per_layer=True)


REGISTRY = {"first_position_norm": PropertyDef("first_position_norm", Params, _unused, _unused, "", (_per_layer("ratio"), _per_layer("norm")), "ratio")}
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


def outcome(text: str | bytes, root: Path = ROOT) -> Spec | SpecError:
    """Parse and collect; any exception but SpecError fails the test, and every problem must carry a plausible line."""
    try:
        spec = parse_spec(text, "specs/fuzz.yaml", registry=REGISTRY, root=root)
        collected(spec)
        return spec
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


def collected(spec: Spec) -> None:
    """What the pytest collector does next: every check's inputs are complete and seeded, and budgeted."""
    for check in spec.checks:
        inputs = check.effective_inputs(spec)
        assert isinstance(inputs.seed, int) and isinstance(inputs.tokens, int) and isinstance(inputs.sequences, int)
        try:
            check_budget(inputs, context_length=None)
        except InputError:
            pass


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


PATHS = paths(VALID)


MAPPING_PATHS = [()] + [p for p in PATHS if isinstance(get(VALID, p), dict)]


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
            get(data, path[:-1])[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            pass
    for path, key, value in extra:
        try:
            target = get(data, path)
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(target, dict):
            target[key] = value
    for path in deletions:
        try:
            del get(data, path[:-1])[path[-1]]
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


# ---------------------------------------------------------------- issue #12: tags, nulls, symlinks, flat lists

TAGS = ["!!bool", "!!int", "!!float", "!!null", "!!str", "!!timestamp", "!!binary", "!!set", "!!omap", "!!python/none", "!custom", "!"]
SCALAR_PATHS = [p for p in PATHS if not isinstance(get(VALID, p), (dict, list))]
PLACEHOLDER = "__geomcheck_fuzz_value__"


@FUZZ
@given(path=st.sampled_from(SCALAR_PATHS), tag=st.sampled_from(TAGS), value=st.one_of(st.text(max_size=12), st.sampled_from(["", "-", "+", "_", ".", "0x", "0b_", "maybe", "1:", "~", "1e5", ".inf"])))
def test_explicit_tags_on_any_value(path: tuple, tag: str, value: str) -> None:
    data = copy.deepcopy(VALID)
    get(data, path[:-1])[path[-1]] = PLACEHOLDER
    text = yaml.safe_dump(data, sort_keys=False).replace(PLACEHOLDER, f"{tag} {json.dumps(value)}")
    outcome(text)


@FUZZ
@given(paths=st.lists(st.sampled_from(PATHS), min_size=1, max_size=3))
def test_nulls_anywhere(paths: list) -> None:
    data = copy.deepcopy(VALID)
    for path in paths:
        try:
            get(data, path[:-1])[path[-1]] = None
        except (KeyError, IndexError, TypeError):
            pass
    outcome(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def linked_project(tmp_path_factory) -> Path:
    """A project whose folder holds symlink loops, dangling links and links that lead outside it."""
    root = tmp_path_factory.mktemp("linked-project")
    project, outside = root / "project", root / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("outside words")
    (project / "pyproject.toml").write_text("")
    (project / "real.txt").write_text("inside words")
    links = {"loop_a": "loop_b", "loop_b": "loop_a", "self_loop": "self_loop", "dangling": "missing.txt",
             "out_file": "../outside/secret.txt", "out_dir": "../outside", "in_dir": ".", "loop_dir": "loop_a"}
    for name, target in links.items():
        os.symlink(target, project / name)
    return project


LINK_SOURCES = ["loop_a", "loop_b", "self_loop", "dangling", "out_file", "out_dir", "in_dir", "loop_dir", "real.txt",
                "loop_dir/x.txt", "in_dir/loop_a", "in_dir/in_dir/real.txt", "out_dir/secret.txt", "loop_a/..", "."]


@FUZZ
@given(source=st.sampled_from(LINK_SOURCES), where=st.sampled_from(["spec", "check"]), absolute=st.booleans())
def test_symlink_sources(linked_project: Path, source: str, where: str, absolute: bool) -> None:
    written = str(linked_project / source) if absolute else source
    data = copy.deepcopy(VALID)
    block = data["inputs"] if where == "spec" else data["checks"][1].setdefault("inputs", {})
    block.update(mode="text", source=written)
    result = outcome(yaml.safe_dump(data, sort_keys=False), root=linked_project)
    if isinstance(result, Spec):
        for check in result.checks:
            resolved = check.effective_inputs(result).source
            assert resolved is None or Path(resolved).is_relative_to(linked_project.resolve())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(MAX_WRITTEN_NODES - 3, 400_000), shape=st.sampled_from(["flow", "block", "mapping", "nested"]))
def test_large_flat_lists_are_refused_quickly(count: int, shape: str) -> None:
    body = {
        "flow": lambda: "checks: [" + ",".join(["1"] * count) + "]\n",
        "block": lambda: "checks:\n" + "- 1\n" * count,
        "mapping": lambda: "".join(f"k{i}: 1\n" for i in range(count // 2)),
        "nested": lambda: "checks:\n" + "".join(f"  - [{i}, {i}]\n" for i in range(count // 3)),
    }[shape]()[: MAX_SPEC_BYTES - 1]
    started = time.process_time()
    result = outcome(body)
    assert time.process_time() - started < 2.0  # 1 s in tests/test_hostile_yaml.py; slack for a loaded machine
    if body.count("\n") > MAX_WRITTEN_NODES:
        assert isinstance(result, SpecError)
