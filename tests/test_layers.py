"""Layer selectors: named ranges scale with depth; explicit ranges and lists accept negative indices."""

from __future__ import annotations

import pytest

from geomcheck.spec.layers import (
    BlockList,
    BlockRange,
    Depth,
    NamedRange,
    SelectorError,
    depth_of,
    describe_selector,
    edge_width,
    format_blocks,
    parse_selector,
    resolve_layers,
)


@pytest.mark.parametrize(
    ("n_blocks", "expected"),
    [(30, (5, 24)), (12, (2, 9)), (24, (4, 19)), (6, (1, 4)), (15, (3, 11))],
)
def test_intermediate_drops_a_sixth_at_each_end(n_blocks: int, expected: tuple[int, int]) -> None:
    blocks = resolve_layers("intermediate", n_blocks)
    assert (blocks[0], blocks[-1]) == expected
    assert blocks == tuple(range(expected[0], expected[1] + 1))


@pytest.mark.parametrize("n_blocks", [3, 6, 12, 13, 24, 30, 32, 80])
def test_named_ranges_partition_the_model(n_blocks: int) -> None:
    early = resolve_layers("early", n_blocks)
    middle = resolve_layers("intermediate", n_blocks)
    late = resolve_layers("late", n_blocks)
    assert early + middle + late == resolve_layers("all", n_blocks) == tuple(range(n_blocks))
    assert len(early) == len(late) == edge_width(n_blocks)


def test_edge_width_rounds_half_up() -> None:
    assert [edge_width(n) for n in (3, 9, 12, 15, 30)] == [1, 2, 2, 3, 5]


@pytest.mark.parametrize("name", ["early", "late"])
def test_edge_range_empty_in_a_tiny_model_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is empty for a model with 2 blocks"):
        resolve_layers(name, 2)


@pytest.mark.parametrize(
    ("selector", "n_blocks", "expected"),
    [
        ([0, 3], 12, (0, 1, 2, 3)),
        ([12, -3], 30, tuple(range(12, 28))),
        ([-3, -1], 12, (9, 10, 11)),
        ({"from": 12, "to": -3}, 30, tuple(range(12, 28))),
        ({"from": 10}, 12, (10, 11)),
        ({"to": 1}, 12, (0, 1)),
        ({"blocks": [3, 7]}, 12, (3, 7)),
        ([5], 12, (5,)),
        ([7, 1, -1, 1], 12, (1, 7, 11)),
        ([4, 4], 12, (4,)),
        (BlockRange(1, 2), 12, (1, 2)),
        (NamedRange.ALL, 2, (0, 1)),
    ],
)
def test_explicit_selectors(selector: object, n_blocks: int, expected: tuple[int, ...]) -> None:
    assert resolve_layers(selector, n_blocks) == expected


@pytest.mark.parametrize(("selector", "index"), [([0, 12], "12"), ([-13, -1], "-13"), ({"blocks": [1, 99]}, "99")])
def test_out_of_range_names_the_index_range_and_block_count(selector: object, index: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_layers(selector, 12)
    text = str(info.value)
    assert f"block index {index}" in text
    assert "12 blocks" in text
    assert "0..11" in text and "-12..-1" in text


def test_mixed_sign_range_that_resolves_backwards_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\[10, -5\] is empty for a model with 12 blocks"):
        resolve_layers([10, -5], 12)


@pytest.mark.parametrize("n_blocks", [0, -1, True, 2.5])
def test_block_count_must_be_positive_integer(n_blocks: object) -> None:
    with pytest.raises(ValueError, match="n_blocks must be a positive integer"):
        resolve_layers("all", n_blocks)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("late", NamedRange.LATE),
        ([1, 4], BlockRange(1, 4)),
        ({"from": -4, "to": -1}, BlockRange(-4, -1)),
        ([1, 2, 3], BlockList((1, 2, 3))),
        ({"blocks": [0, 9]}, BlockList((0, 9))),
    ],
)
def test_parse_selector_forms(raw: object, parsed: object) -> None:
    assert parse_selector(raw) == parsed


@pytest.mark.parametrize(
    ("raw", "fragment", "hint"),
    [
        ("intermedate", "got 'intermedate'", "did you mean 'intermediate'?"),
        ("middle", "must be one of all, intermediate", None),
        ([5, 2], "range end 2 is before its start 5", None),
        ([], "must name at least one block", None),
        ([1.5, 2], "must be in [0, 1]", None),
        ([2, 1.0, 3], "integer block indices", None),
        ([True, 2], "integer block indices", None),
        ({"frm": 1}, "unknown key 'frm'", "did you mean 'from'?"),
        ({"blocks": [1], "from": 2}, "either blocks or from/to", None),
        ({"blocks": "1, 2"}, "blocks must be a list", None),
        (3, "got 3", None),
        (None, "got None", None),
    ],
)
def test_parse_selector_errors(raw: object, fragment: str, hint: str | None) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(raw)
    assert fragment in info.value.message
    assert info.value.hint == hint


def test_describe_selector_round_trips_through_parse() -> None:
    for raw in ("intermediate", [2, -1], {"blocks": [1, 5, 9]}):
        selector = parse_selector(raw)
        assert describe_selector(selector) in ("intermediate", "[2, -1]", "{blocks: [1, 5, 9]}")


@pytest.mark.parametrize(
    ("blocks", "text"),
    [([5], "block 5"), (range(12, 28), "blocks 12–27"), ([1, 2, 3, 7, 9, 10], "blocks 1–3, 7, 9–10"), ([], "no blocks"), ([3, 1], "blocks 1, 3")],
)
def test_format_blocks(blocks: object, text: str) -> None:
    assert format_blocks(blocks) == text


@pytest.mark.parametrize(
    ("selector", "n_blocks", "first", "last"),
    [
        ({"from": 0.3, "to": 0.9}, 12, 4, 9),
        ({"from": 0.3, "to": 0.9}, 24, 7, 20),
        ({"from": 0.3, "to": 0.9}, 30, 9, 26),
        ({"from": 0.0, "to": 1.0}, 12, 0, 11),
        ({"from": 0.0, "to": 1.0}, 30, 0, 29),
        ({"from": 0.5, "to": 0.5}, 25, 12, 12),  # a fraction landing on a block selects it
        ({"from": 0.5}, 24, 12, 23),  # ceil(0.5 * 23) = 12, to the last block by default
        ([0.25, -2], 30, 8, 28),  # a depth and an index mix
        ({"from": 2, "to": 0.5}, 24, 2, 11),
    ],
)
def test_depth_ranges_resolve_relative_to_the_model(selector: object, n_blocks: int, first: int, last: int) -> None:
    blocks = resolve_layers(selector, n_blocks)
    assert blocks == tuple(range(first, last + 1))


def test_depth_range_is_a_distinct_value_from_block_indices() -> None:
    assert parse_selector({"from": 0.0, "to": 1.0}) == BlockRange(Depth(0.0), Depth(1.0))
    assert parse_selector({"from": 0.0, "to": 1.0}) != parse_selector({"from": 0, "to": 1})
    assert describe_selector(parse_selector({"from": 0.3, "to": 0.9})) == "{from: 0.3, to: 0.9}"


def test_depth_of_is_the_inverse_of_a_depth_bound() -> None:
    for n_blocks in (12, 24, 30):
        for block in range(n_blocks):
            depth = Depth(depth_of(block, n_blocks))
            assert depth.first_block(n_blocks) == block == depth.last_block(n_blocks)


def test_empty_depth_range_fails_at_resolution() -> None:
    with pytest.raises(ValueError, match="is empty for a model with 4 blocks"):
        resolve_layers({"from": 0.4, "to": 0.6}, 4)  # 1.2 .. 1.8 holds no block


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"from": 1.5}, "must be in [0, 1]"),
        ({"to": -0.2}, "must be in [0, 1]"),
        ({"from": 3.0}, "for block 3 write 3 without the decimal point"),
        ({"from": float("nan")}, "must be in [0, 1]"),
        ({"from": 0.9, "to": 0.3}, "before its start 0.9"),
        ({"blocks": [0.5, 0.7]}, "fractions of depth go in a range"),
    ],
)
def test_bad_depth_values_are_refused(raw: object, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(raw)
    assert fragment in info.value.message


def test_bad_depth_in_a_spec_is_reported_with_file_and_line() -> None:
    from geomcheck.errors import SpecError
    from geomcheck.spec.schema import parse_spec

    text = (
        "checks:\n"
        "  - property: first_position_norm\n"
        "    layers: {from: 0.3, to: 0.9}\n"
        "    expect: {min: 1}\n"
        "  - id: second\n"
        "    property: first_position_norm\n"
        "    layers: {from: 0.9, to: 1.7}\n"
        "    expect: {metric: onset_depth, between: [0.1, 0.6]}\n"
    )
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/decoder.yaml")
    problems = info.value.problems
    assert len(problems) == 1
    assert (problems[0].path, problems[0].line) == ("specs/decoder.yaml", 7)
    assert "checks[1].layers" in str(problems[0]) and "must be in [0, 1]" in str(problems[0])
    good = parse_spec(text.replace("1.7", "1.0"), "specs/decoder.yaml")
    assert good.checks[0].resolve_layers(24) == tuple(range(7, 21))
    assert good.checks[1].resolve_layers(30) == tuple(range(27, 30))
