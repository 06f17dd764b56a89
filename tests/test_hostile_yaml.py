"""Hostile YAML: explicit tags with text they cannot hold, and files whose size is in their node count."""

from __future__ import annotations

import time

import pytest

from geomcheck.errors import SpecError
from geomcheck.spec.schema import parse_spec
from geomcheck.spec.yaml_positions import MAX_DEPTH, MAX_WRITTEN_NODES, read_yaml


def _spec_with_min(value: str) -> str:
    return f"checks:\n  - property: first_position_norm\n    expect: {{min: {value}}}\n"


# Each crashed PyYAML's constructor (KeyError or IndexError) before the text was checked against its tag.
BAD_TAGS = [
    ("!!bool maybe", "true or false"),
    ('!!bool ""', "true or false"),
    ('!!int ""', "an integer"),
    ('!!float ""', "a number"),
    ('!!int "-"', "an integer"),
    ('!!int "+"', "an integer"),
    ('!!int "_"', "an integer"),
    ('!!int "0b_"', "an integer"),
    ('!!float "-"', "a number"),
    ("!!null x", "null"),
]


@pytest.mark.parametrize("value, kind", BAD_TAGS, ids=[value for value, _ in BAD_TAGS])
def test_explicit_tags_with_text_they_cannot_hold_are_spec_problems_at_the_node(value, kind):
    with pytest.raises(SpecError) as info:
        parse_spec(_spec_with_min(value), "specs/tags.yaml")
    (problem,) = info.value.problems
    # line 3, column 19: where the tagged value starts, inside `expect: {min: ...}`
    assert (problem.line, problem.column) == (3, 19), str(problem)
    assert problem.key_path == "checks[0].expect.min"
    assert f"as {kind}" in problem.message and "!!" in problem.message


@pytest.mark.parametrize("value, expected", [("!!float 3", 3.0), ("!!float 1e5", 1e5), ("!!int 1_000", 1000), ("!!int 0x10", 16)])
def test_explicit_tags_with_good_text_still_read(value, expected):
    assert parse_spec(_spec_with_min(value)).checks[0].expect.min == expected


def test_a_tagged_key_or_value_anywhere_is_located():
    text = "name: !!int ''\nchecks:\n  - property: first_position_norm\n    expect: {min: 1}\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/k.yaml")
    assert [(p.line, p.key_path) for p in info.value.problems] == [(1, "name")]


def _cpu_seconds(text: str) -> tuple[float, SpecError]:
    started = time.process_time()
    with pytest.raises(SpecError) as info:
        read_yaml(text, "specs/big.yaml")
    return time.process_time() - started, info.value


def test_a_660_kb_flat_list_is_refused_while_composing_in_under_a_second():
    text = "checks: [" + ",".join(["1"] * 330_000) + "]\n"  # 660 KB, under the 1 MB cap; took 9.8 s to refuse
    assert 600_000 < len(text) < 1_000_000
    seconds, error = _cpu_seconds(text)
    (problem,) = error.problems
    assert seconds < 1.0, f"{seconds:.2f} s of CPU to refuse"
    assert f"more than {MAX_WRITTEN_NODES:,} values" in problem.message and problem.line == 1


def test_a_long_block_mapping_is_refused_at_the_line_where_the_limit_hit():
    text = "".join(f"k{i}: 1\n" for i in range(60_000))
    seconds, error = _cpu_seconds(text)
    (problem,) = error.problems
    assert seconds < 1.0
    assert problem.line == MAX_WRITTEN_NODES // 2  # a key and its value are two nodes


def test_deep_nesting_is_refused_at_the_depth_limit_not_by_recursion():
    seconds, error = _cpu_seconds("[" * 200_000)
    (problem,) = error.problems
    assert seconds < 1.0 and f"more than {MAX_DEPTH} levels" in problem.message
    assert problem.column == MAX_DEPTH + 2


def test_ordinary_specs_are_far_below_the_node_limit():
    text = "checks:\n" + "".join(f"  - {{id: c{i}, property: first_position_norm, expect: {{min: 1}}}}\n" for i in range(300))
    assert len(parse_spec(text).checks) == 300


@pytest.mark.parametrize(("written", "yaml11"), [("010", "8"), ("1:30", "90"), ("0b11", "3"), ("1_000", "1000")])
def test_numbers_only_yaml_1_1_reads_as_numbers_are_refused_at_their_line(written, yaml11):
    """``tokens: 010`` is 8 to PyYAML (YAML 1.1) and 10 to a reviewer: a spec must not depend on which."""
    text = f"inputs:\n  sequences: 4\n  tokens: {written}\nchecks:\n  - property: first_position_norm\n    expect: {{min: 0}}\n"
    with pytest.raises(SpecError) as error:
        parse_spec(text, "t.yaml")
    message = str(error.value)
    assert message.startswith("t.yaml:3:11: inputs.tokens:") and f"is {yaml11} to YAML 1.1" in message


def test_a_base_60_form_that_stays_text_is_refused_as_not_an_integer():
    text = "inputs:\n  sequences: 4\n  tokens: 0:16\nchecks:\n  - property: first_position_norm\n    expect: {min: 0}\n"
    with pytest.raises(SpecError, match=r"t.yaml:3:\d+: inputs.tokens: must be an integer .* got '0:16'"):
        parse_spec(text, "t.yaml")
