"""Layer selectors: parsed once from a spec into a frozen value, resolved to block indices per model."""

from __future__ import annotations

import difflib
import math
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
class Depth:
    """A fraction of depth in [0, 1]: block b of n sits at depth b / (n - 1), so 0 is the first block, 1 the last.

    Written as a float (``0.3``) where a block index would be an integer, so one range fits models
    of any depth: ``{from: 0.3, to: 0.9}`` is blocks 4-9 of 12, 7-20 of 24 and 9-26 of 30.
    """

    fraction: float

    def first_block(self, n_blocks: int) -> int:
        """The first block at or beyond this depth (a range's start)."""
        return math.ceil(self.fraction * (n_blocks - 1) - DEPTH_EPSILON)

    def last_block(self, n_blocks: int) -> int:
        """The last block at or before this depth (a range's end)."""
        return math.floor(self.fraction * (n_blocks - 1) + DEPTH_EPSILON)


Bound = int | Depth


@dataclass(frozen=True)
class BlockRange:
    """Blocks ``start`` to ``end`` inclusive; negative indices count from the end (-1 is the last block),
    a Depth is a fraction of depth (the blocks between the two depths, both included)."""

    start: Bound
    end: Bound


@dataclass(frozen=True)
class BlockList:
    """Explicitly listed blocks; negative indices count from the end."""

    blocks: tuple[int, ...]


LayerSelector = NamedRange | BlockRange | BlockList

NAMED_RANGES: tuple[str, ...] = tuple(member.value for member in NamedRange)
# Rounding slack when a fraction times (n - 1) lands on a whole block (0.5 of 21 blocks is block 10 exactly).
DEPTH_EPSILON = 1e-9
# Far beyond any transformer's depth (the deepest published have ~200 blocks); an index past it is a typo.
MAX_BLOCKS = 1024
RANGE_KEYS: tuple[str, ...] = ("from", "to", "blocks")
SELECTOR_FORMS = (
    "all, intermediate, early, late, [start, end] (inclusive), {from: start, to: end}, "
    "{blocks: [i, j, ...]} or a list of 1 or 3+ block indices; start and end are block indices or "
    "fractions of depth written with a decimal point (0.0 first block .. 1.0 last)"
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
        if len(raw) == 2:
            return _checked_range(_bound(raw[0], "a layer range"), _bound(raw[1], "a layer range"))
        return BlockList(_indices(raw, "a layer list"))
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
    start = _bound(raw.get("from", 0), "from")
    end = _bound(raw.get("to", -1), "to")
    return _checked_range(start, end)


def _checked_range(start: Bound, end: Bound) -> BlockRange:
    if isinstance(start, Depth) and isinstance(end, Depth):
        if end.fraction < start.fraction:
            raise SelectorError(
                f"depth range ends at {end.fraction:g}, before its start {start.fraction:g}; write from <= to"
            )
    elif isinstance(start, int) and isinstance(end, int) and (start >= 0) == (end >= 0) and end < start:
        raise SelectorError(f"range end {end} is before its start {start}; write [start, end] with start <= end")
    return BlockRange(start, end)


def _bound(value: object, what: str) -> Bound:
    """A range end: an integer block index, or a float fraction of depth in [0, 1]."""
    if isinstance(value, float):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            whole = f"; for block {int(value)} write {int(value)} without the decimal point" if value.is_integer() else ""
            raise SelectorError(
                f"{what} is a fraction of depth, which must be in [0, 1] (0.0 the first block, 1.0 the last); "
                f"got {_describe(value)}{whole}"
            )
        return Depth(value)
    return _index(value, what)


def _indices(raw: Sequence, what: str) -> tuple[int, ...]:
    if len(raw) == 0:
        raise SelectorError(f"{what} must name at least one block; got []")
    return tuple(_index(item, what) for item in raw)


def _index(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        depth = " (fractions of depth go in a range: {from: 0.3, to: 0.9})" if isinstance(value, float) else ""
        raise SelectorError(f"{what} must hold integer block indices; got {_describe(value)}{depth}")
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
        start = parsed.start.first_block(n_blocks) if isinstance(parsed.start, Depth) else _absolute(parsed.start, n_blocks)
        end = parsed.end.last_block(n_blocks) if isinstance(parsed.end, Depth) else _absolute(parsed.end, n_blocks)
        if end < start:
            raise ValueError(
                f"layer range {describe_selector(parsed)} is empty for a model with {n_blocks} blocks "
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
        if isinstance(selector.start, Depth) or isinstance(selector.end, Depth):
            return f"{{from: {_bound_text(selector.start)}, to: {_bound_text(selector.end)}}}"
        return f"[{selector.start}, {selector.end}]"
    return f"{{blocks: [{', '.join(str(b) for b in selector.blocks)}]}}"


def _bound_text(bound: Bound) -> str:
    return repr(float(bound.fraction)) if isinstance(bound, Depth) else str(bound)


def depth_of(block: int, n_blocks: int) -> float:
    """Block ``block``'s fraction of depth, b / (n - 1) (0 for a one-block model): the inverse of Depth."""
    return 0.0 if n_blocks <= 1 else block / (n_blocks - 1)


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
