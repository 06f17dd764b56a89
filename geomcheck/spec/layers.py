"""Layer selectors: parsed once from a spec into a frozen value, resolved to block indices per model."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class NamedRange(str, Enum):
    """A range defined relative to depth, so one spec fits models with different block counts."""

    ALL = "all"
    INTERMEDIATE = "intermediate"
    EARLY = "early"
    LATE = "late"


@dataclass(frozen=True)
class BlockRange:
    """Blocks ``start`` to ``end`` inclusive; negative indices count from the end (-1 is the last block)."""

    start: int
    end: int


@dataclass(frozen=True)
class BlockList:
    """Explicitly listed blocks; negative indices count from the end."""

    blocks: tuple[int, ...]


LayerSelector = NamedRange | BlockRange | BlockList

NAMED_RANGES: tuple[str, ...] = tuple(member.value for member in NamedRange)
# Far beyond any transformer's depth (the deepest published have ~200 blocks); an index past it is a typo.
MAX_BLOCKS = 1024
RANGE_KEYS: tuple[str, ...] = ("from", "to", "blocks")
SELECTOR_FORMS = (
    "all, intermediate, early, late, [start, end] (inclusive), {from: start, to: end}, "
    "{blocks: [i, j, ...]} or a list of 1 or 3+ block indices"
)


class SelectorError(ValueError):
    """A layer selector is malformed; ``hint`` names the closest valid word when there is one."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


def parse_selector(raw: object) -> LayerSelector:
    """Turn the YAML forms into a selector; checks only what can be checked without the block count.

    A two-element list is always an inclusive range (``[12, -3]``); two separate blocks are written
    ``{blocks: [3, 7]}``.
    """
    if isinstance(raw, (NamedRange, BlockRange, BlockList)):
        return raw
    if isinstance(raw, str):
        try:
            return NamedRange(raw)
        except ValueError:
            close = difflib.get_close_matches(raw, NAMED_RANGES, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            raise SelectorError(f"must be one of {SELECTOR_FORMS}; got {raw!r}", hint) from None
    if isinstance(raw, Mapping):
        return _parse_mapping(raw)
    if isinstance(raw, Sequence) and not isinstance(raw, (bytes, bytearray)):
        items = _indices(raw, "a layer list")
        if len(items) == 2:
            return _checked_range(items[0], items[1])
        return BlockList(items)
    raise SelectorError(f"must be one of {SELECTOR_FORMS}; got {_describe(raw)}")


def _parse_mapping(raw: Mapping) -> LayerSelector:
    unknown = [key for key in raw if key not in RANGE_KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), RANGE_KEYS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else None
        raise SelectorError(f"unknown key {key!r} in a layer range; valid keys: {', '.join(RANGE_KEYS)}", hint)
    if "blocks" in raw:
        if len(raw) > 1:
            raise SelectorError("a layer mapping takes either blocks or from/to, not both")
        blocks = raw["blocks"]
        if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
            raise SelectorError(f"blocks must be a list of block indices; got {_describe(blocks)}")
        return BlockList(_indices(blocks, "blocks"))
    start = _index(raw.get("from", 0), "from")
    end = _index(raw.get("to", -1), "to")
    return _checked_range(start, end)


def _checked_range(start: int, end: int) -> BlockRange:
    if (start >= 0) == (end >= 0) and end < start:
        raise SelectorError(f"range end {end} is before its start {start}; write [start, end] with start <= end")
    return BlockRange(start, end)


def _indices(raw: Sequence, what: str) -> tuple[int, ...]:
    if len(raw) == 0:
        raise SelectorError(f"{what} must name at least one block; got []")
    return tuple(_index(item, what) for item in raw)


def _index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SelectorError(f"{what} must hold integer block indices; got {_describe(value)}")
    if not -MAX_BLOCKS <= value < MAX_BLOCKS:
        raise SelectorError(
            f"{what} holds block {_describe(value)}, which no model resolves; indices run from "
            f"{-MAX_BLOCKS} to {MAX_BLOCKS - 1} (negative ones count from the end)"
        )
    return value


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def edge_width(n_blocks: int) -> int:
    """How many blocks ``early`` and ``late`` hold: n/6 rounded half up (12 blocks -> 2, 15 -> 3, 30 -> 5)."""
    return (n_blocks + 3) // 6


def resolve_layers(selector: LayerSelector | str | Sequence[int] | Mapping[str, object], n_blocks: int) -> tuple[int, ...]:
    """Block indices, ascending and distinct, that ``selector`` picks in a model of ``n_blocks`` blocks.

    Raises ValueError naming the allowed range when an index falls outside the model, and
    when a named range would be empty (too few blocks).
    """
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer; got {n_blocks!r}")
    parsed = parse_selector(selector)
    if isinstance(parsed, NamedRange):
        return _named(parsed, n_blocks)
    if isinstance(parsed, BlockRange):
        start, end = _absolute(parsed.start, n_blocks), _absolute(parsed.end, n_blocks)
        if end < start:
            raise ValueError(
                f"layer range [{parsed.start}, {parsed.end}] is empty for a model with {n_blocks} blocks "
                f"(resolves to {start}..{end})"
            )
        return tuple(range(start, end + 1))
    return tuple(sorted({_absolute(index, n_blocks) for index in parsed.blocks}))


def _named(name: NamedRange, n_blocks: int) -> tuple[int, ...]:
    edge = edge_width(n_blocks)
    if name is NamedRange.ALL:
        return tuple(range(n_blocks))
    if name is NamedRange.EARLY:
        blocks = tuple(range(edge))
    elif name is NamedRange.LATE:
        blocks = tuple(range(n_blocks - edge, n_blocks))
    else:
        blocks = tuple(range(edge, n_blocks - edge))
    if not blocks:
        raise ValueError(
            f"{name.value!r} is empty for a model with {n_blocks} blocks (the edge ranges hold "
            f"round(n/6) = {edge} blocks); select blocks explicitly, e.g. [0, -1]"
        )
    return blocks


def _absolute(index: int, n_blocks: int) -> int:
    resolved = index + n_blocks if index < 0 else index
    if not 0 <= resolved < n_blocks:
        raise ValueError(
            f"block index {index} is out of range for a model with {n_blocks} blocks; "
            f"valid indices are 0..{n_blocks - 1} or {-n_blocks}..-1"
        )
    return resolved


def describe_selector(selector: LayerSelector) -> str:
    """The selector as a person would write it in a spec."""
    if isinstance(selector, NamedRange):
        return selector.value
    if isinstance(selector, BlockRange):
        return f"[{selector.start}, {selector.end}]"
    return f"{{blocks: [{', '.join(str(b) for b in selector.blocks)}]}}"


def format_blocks(blocks: Iterable[int]) -> str:
    """``block 5``, ``blocks 12–27`` or ``blocks 1–3, 7, 9–10``: contiguous runs joined by an en dash."""
    ordered = sorted(set(blocks))
    if not ordered:
        return "no blocks"
    if len(ordered) == 1:
        return f"block {ordered[0]}"
    runs: list[tuple[int, int]] = []
    for index in ordered:
        if runs and index == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    parts = [str(a) if a == b else f"{a}–{b}" for a, b in runs]
    return "blocks " + ", ".join(parts)
