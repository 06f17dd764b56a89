"""Pydantic's ValidationErrors name internal locations; spec authors need the key they wrote, a sentence and a hint."""

from __future__ import annotations

import difflib
import enum
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import annotated_types
from pydantic import BaseModel, ValidationError

from geomcheck.errors import SpecProblem

if TYPE_CHECKING:
    from geomcheck.spec.yaml_positions import Located

KeyPath = tuple[Union[str, int], ...]
# Problems worth reading in one file; past this a file is not a spec with mistakes but something else.
MAX_PROBLEMS = 200


def format_key_path(key_path: KeyPath) -> str:
    """``('checks', 2, 'expect', 'min')`` -> ``checks[2].expect.min``."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"



def translate(error: ValidationError, located: Located, model: type[BaseModel], prefix: KeyPath = ()) -> list[SpecProblem]:
    """One SpecProblem per error, at the key the author wrote (``prefix``: where ``model``'s data sits in the file)."""
    problems = []
    base = _child(located.data, prefix)
    for err in error.errors(include_url=False)[:MAX_PROBLEMS]:
        loc = tuple(err["loc"])
        written, data = list(prefix), base
        for part in loc:
            if _child(data, (part,)) is _ABSENT:
                continue  # pydantic's union-branch and validator labels
            data = _child(data, (part,))
            written.append(part)
        key_path = tuple(written)
        at = key_path
        if err["type"] == "missing" and loc and isinstance(loc[-1], str):
            key_path = key_path + (loc[-1],)
        message, hint = _message(err, model, key_path[len(prefix):])
        problems.append(located.problem(key_path, message, hint, at=at))
    return problems


_ABSENT = object()


def _child(data: object, key_path: KeyPath) -> object:
    """The value written at ``key_path`` below ``data``, or _ABSENT."""
    for part in key_path:
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return _ABSENT
    return data


_TYPE_ERRORS = {
    "int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "bool_type", "bool_parsing",
    "string_type", "finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal",
}
_MAPPING_ERRORS = {"dict_type", "model_type", "model_attributes_type", "dataclass_type"}
_LIST_ERRORS = {"list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"}


def _message(err: Mapping[str, Any], model: type[BaseModel], key_path: KeyPath) -> tuple[str, str | None]:
    kind, ctx = err["type"], err.get("ctx") or {}
    got = show_value(err.get("input"))
    if "message" in ctx:
        return sentence(str(ctx["message"])), ctx.get("hint")
    if kind == "missing":
        return f"required key {key_path[-1]!r} is missing.", None
    if kind == "extra_forbidden":
        owner = _annotation_at(model, key_path[:-1])
        valid = sorted(_model_class(owner[0]).model_fields) if owner and _model_class(owner[0]) else []
        listing = f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"unknown key {key_path[-1]!r}{listing}.", closest(str(key_path[-1]), valid)
    leaf = _annotation_at(model, key_path)
    if kind in _TYPE_ERRORS:
        return f"must be {_expected(leaf, finite=kind == 'finite_number')}; got {got}.", None
    if kind in ("literal_error", "enum"):
        choices = _choices(leaf) or re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        listing = ", ".join(repr(c) for c in choices) or ctx.get("expected", "")
        hint = closest(err.get("input"), choices) if isinstance(err.get("input"), str) else None
        return f"must be one of {listing}; got {got}.", hint
    if kind in _MAPPING_ERRORS:
        return f"must be a mapping (key: value lines); got {got}.", None
    if kind in _LIST_ERRORS:
        return f"must be a list; got {got}.", None
    if kind == "too_short":
        return f"must hold at least {ctx.get('min_length')} item(s); got {ctx.get('actual_length', 0)}.", None
    if kind == "too_long":
        return f"may hold at most {ctx.get('max_length')} item(s); got {ctx.get('actual_length', 'more')}.", None
    text = re.sub(r"^(Value error|Assertion failed), ", "", str(err.get("msg", kind)))
    return sentence(f"{text[:1].lower()}{text[1:]}; got {got}"), None


def sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def closest(word: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1)
    return f"did you mean {close[0]!r}?" if close else None


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """Remove Annotated and Optional layers, collecting the metadata (constraints) on the way."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = typing.get_args(annotation)
            for item in extra:
                metadata.extend(getattr(item, "metadata", None) or [item])
        elif origin in (Union, types.UnionType):
            options = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(options) != 1:
                return annotation, metadata
            annotation = options[0]
        else:
            return annotation, metadata


def _model_class(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _annotation_at(model: type[BaseModel], key_path: KeyPath) -> tuple[Any, list[Any]] | None:
    """The (type, constraints) a model declares at ``key_path``, or None when it cannot tell."""
    current: tuple[Any, list[Any]] = (model, [])
    for part in key_path:
        core = current[0]
        if isinstance(part, str):
            cls = _model_class(core)
            if cls is None or part not in cls.model_fields:
                return None
            field = cls.model_fields[part]
            core, metadata = _strip(field.annotation)
            current = (core, list(field.metadata) + metadata)
        else:
            args = typing.get_args(core)
            if typing.get_origin(core) not in (list, tuple, Sequence) or not args:
                return None
            current = _strip(args[0])
    return current


def _expected(leaf: tuple[Any, list[Any]] | None, *, finite: bool = False) -> str:
    core, metadata = leaf if leaf else (None, [])
    kinds = {int: "an integer", float: "a finite number" if finite else "a number", bool: "true or false", str: "a string"}
    kind = kinds.get(core, "a finite number" if finite else "a number")
    low = high = None
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            low = f"[{show_number(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            low = f"({show_number(item.gt)}"
        elif isinstance(item, annotated_types.Le):
            high = f"{show_number(item.le)}]"
        elif isinstance(item, annotated_types.Lt):
            high = f"{show_number(item.lt)})"
    if low and high:
        return f"{kind} in {low}, {high}"
    if low:
        return f"{kind} {'≥' if low[0] == '[' else '>'} {low[1:]}"
    if high:
        return f"{kind} {'≤' if high[-1] == ']' else '<'} {high[:-1]}"
    return kind


def _choices(leaf: tuple[Any, list[Any]] | None) -> list[str]:
    if not leaf:
        return []
    core = leaf[0]
    if typing.get_origin(core) is Literal:
        return [str(arg) for arg in typing.get_args(core)]
    if isinstance(core, type) and issubclass(core, enum.Enum):
        return [str(member.value) for member in core]
    return []


def show_number(value: float) -> str:
    return f"{value:.12g}".replace("e+", "e")


def show_value(value: object) -> str:
    """A value as the YAML author wrote it, short enough for one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if abs(value) >= 10**15:
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return f"{value:.1f}"  # 4.0, not 4: the difference is why an integer field refused it
        return "nan" if math.isnan(value) else show_number(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "an empty mapping" if not value else "a mapping"
    if isinstance(value, (list, tuple)):
        text = repr(list(value)) if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value) else ""
        return text if text and len(text) <= 40 else f"a list of {len(value)} items"
    return type(value).__name__

