"""Spec errors must point at file:line:column, so YAML is read into plain data with a position per key path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from geomcheck.errors import SpecError, SpecProblem
from geomcheck.spec.problems import KeyPath, format_key_path, sentence

MAX_SPEC_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64
# Values written in the file, counted while composing: PyYAML's pure-Python parser spends ~20 us per
# node, and validation as much again, so the limit has to stop a flat list long before MAX_NODES to
# refuse any file in well under a second. The shipped specs hold a few hundred nodes.
MAX_WRITTEN_NODES = 10_000


class _TooLarge(Exception):
    """Raised from inside the composer, so a huge or deep file is refused before the rest is parsed."""

    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e5`` as a float, as YAML 1.2 does (PyYAML wants ``1.0e5``).

    It counts nodes and nesting as it composes them and stops at MAX_WRITTEN_NODES or MAX_DEPTH,
    so the cost of refusing a file does not grow with the size of the file.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.written_nodes = 0
        self.depth = 0

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
        explicit = self.peek_event().tag not in (None, "!")
        node = super().compose_scalar_node(anchor)
        node.explicit_tag = explicit  # the writer named the type (``!!int 1_000``): no YAML 1.1 guesswork to refuse
        return node

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        self.written_nodes += 1
        if self.written_nodes > MAX_WRITTEN_NODES:
            raise _TooLarge(f"the file holds more than {MAX_WRITTEN_NODES:,} values; a spec is far smaller, "
                            "so it is refused unread.", self.peek_event().start_mark)
        if self.depth > MAX_DEPTH:
            raise _TooLarge(f"values are nested more than {MAX_DEPTH} levels deep; refusing to read it.",
                            self.peek_event().start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


_SpecLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("null", "bool", "int", "float", "str")}
_TEXT_TAGS = {_TAG + "timestamp", _TAG + "value"}  # dates and a bare `=` stay the text that was written
_MAP_TAG, _SEQ_TAG, _MERGE_TAG = _TAG + "map", _TAG + "seq", _TAG + "merge"
_KINDS = {"null": "null", "bool": "true or false", "int": "an integer", "float": "a number"}


def _scalar_patterns() -> dict[str, tuple[re.Pattern[str], ...]]:
    """The text each typed tag accepts: the patterns that resolve plain scalars to it.

    An explicit tag (``!!int ""``, ``!!bool maybe``) skips that resolution, and PyYAML's constructors
    then fail with KeyError or IndexError; text is checked against the same patterns first. A
    ``!!float`` also takes integer text (``!!float 3`` is 3.0).
    """
    found: dict[str, dict[str, re.Pattern[str]]] = {}
    for resolvers in _SpecLoader.yaml_implicit_resolvers.values():
        for tag, pattern in resolvers:
            found.setdefault(tag, {})[pattern.pattern] = pattern
    patterns = {tag: tuple(found.get(_TAG + tag, {}).values()) for tag in _KINDS}
    patterns["float"] += patterns["int"]
    return {_TAG + tag: value for tag, value in patterns.items()}


_SCALAR_PATTERNS = _scalar_patterns()


@dataclass(frozen=True)
class Located:
    """Plain YAML data plus the 1-based (line, column) of every key path in it."""

    data: object
    positions: Mapping[KeyPath, tuple[int, int]]
    path: str

    def position(self, key_path: KeyPath) -> tuple[int, int]:
        """Where ``key_path`` was written, or where its nearest written parent was."""
        for end in range(len(key_path), -1, -1):
            if key_path[:end] in self.positions:
                return self.positions[key_path[:end]]
        return (1, 1)

    def problem(self, key_path: KeyPath, message: str, hint: str | None = None, *, at: KeyPath | None = None) -> SpecProblem:
        line, column = self.position(key_path if at is None else at)
        return SpecProblem(self.path, line, column, format_key_path(key_path), message, hint)


class _Abort(Exception):
    def __init__(self, problem: SpecProblem) -> None:
        self.problem = problem


def _unreadable(node: yaml.ScalarNode) -> str:
    kind = _KINDS.get(node.tag.rsplit(":", 1)[-1], "a value")
    return f"cannot read {node.value[:40]!r} as {kind} (tag {node.tag.replace(_TAG, '!!')})."


# Number forms that only YAML 1.1 reads as numbers, and reads differently from what most people mean:
# ``010`` is 8 (octal), ``0:16`` is 16 (base 60), ``0b11`` is 3, ``1_000`` is 1000. YAML 1.2 (and every
# other tool a reviewer uses) reads them as 10, text, text, text; a spec must not depend on which.
_YAML11_NUMBER = re.compile(r"^[-+]?(?:0[0-7_]+|0b[01_]+|[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?|[0-9]+(?:_[0-9_]*)+(?:\.[0-9_]*)?)$")


def _yaml11_only(node: yaml.ScalarNode) -> str | None:
    if getattr(node, "explicit_tag", False) or node.tag not in (_TAG + "int", _TAG + "float") or not _YAML11_NUMBER.match(node.value):
        return None
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node)
    except (ValueError, OverflowError):
        return None  # unreadable text: reported as such by the caller
    return (f"{node.value!r} is {value!r} to YAML 1.1 (octal, base 60, binary or digit grouping) but not to YAML 1.2 "
            f"or most readers; write the number plainly ({value!r}), or quote it if it is text.")


def _tag_message(tag: str) -> str:
    return f"YAML tag {tag!r} is not allowed; a spec holds plain strings, numbers, booleans, lists and mappings."


class _Converter:
    """Node tree to plain data; refuses non-standard tags and counts nodes as aliases expand."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[KeyPath, tuple[int, int]] = {}
        self.problems: list[SpecProblem] = []
        self.count = 0
        self.constructor = yaml.constructor.SafeConstructor()

    def _problem(self, node: yaml.Node, key_path: KeyPath, message: str) -> SpecProblem:
        mark = node.start_mark
        return SpecProblem(self.path, mark.line + 1, mark.column + 1, format_key_path(key_path), message)

    def convert(self, node: yaml.Node, key_path: KeyPath, depth: int = 0) -> object:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Abort(self._problem(node, key_path, f"the document expands to more than {MAX_NODES:,} values "
                                                       "(aliases nested inside aliases?); refusing to read it."))
        if depth > MAX_DEPTH:
            raise _Abort(self._problem(node, key_path, f"values are nested more than {MAX_DEPTH} levels deep "
                                                       "(a recursive alias?); refusing to read it."))
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _TEXT_TAGS:
                return node.value
            if node.tag not in _SCALAR_TAGS:
                self.problems.append(self._problem(node, key_path, _tag_message(node.tag)))
                return None
            patterns = _SCALAR_PATTERNS.get(node.tag, ())
            if patterns and not any(p.match(node.value) for p in patterns):
                self.problems.append(self._problem(node, key_path, _unreadable(node)))
                return None
            ambiguous = _yaml11_only(node)
            if ambiguous:
                self.problems.append(self._problem(node, key_path, ambiguous))
                return None
            try:
                return self.constructor.construct_object(node)
            except (ValueError, OverflowError):  # e.g. an integer past Python's 4300-digit limit
                self.problems.append(self._problem(node, key_path, _unreadable(node)))
                return None
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            items = []
            for index, child in enumerate(node.value):
                self.positions[key_path + (index,)] = (child.start_mark.line + 1, child.start_mark.column + 1)
                items.append(self.convert(child, key_path + (index,), depth + 1))
            return items
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, key_path, depth)
        self.problems.append(self._problem(node, key_path, _tag_message(node.tag)))
        return None

    def _mapping(self, node: yaml.MappingNode, key_path: KeyPath, depth: int) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        message = "a merge key (<<) takes a mapping or a list of mappings."
                        self.problems.append(self._problem(source, key_path, message))
                        continue
                    for key, value in self._mapping(source, key_path, depth + 1).items():
                        result.setdefault(key, value)
        explicit: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS | _TEXT_TAGS:
                self.problems.append(self._problem(key_node, key_path, "keys must be plain words; got a list, mapping or tagged key."))
                continue
            key = key_node.value  # the written text: `on:` stays "on", not YAML 1.1's True
            child_path = key_path + (key,)
            line = key_node.start_mark.line + 1
            if key in explicit:
                message = f"duplicate key {key!r} (first written on line {explicit[key]})."
                self.problems.append(self._problem(key_node, child_path, message))
                continue
            explicit[key] = line
            self.positions[child_path] = (line, key_node.start_mark.column + 1)
            result[key] = self.convert(value_node, child_path, depth + 1)
        return result


def read_yaml(text: str | bytes, path: str) -> Located:
    """Parse one YAML document into plain data with positions; raises SpecError with line numbers."""
    if isinstance(text, bytes):
        if len(text) > MAX_SPEC_BYTES:
            raise _file_error(path, f"is {len(text):,} bytes; a spec may hold at most {MAX_SPEC_BYTES:,}.")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line, column = _line_column(text, exc.start, newline=b"\n")
            raise _file_error(path, f"is not UTF-8 text (byte {text[exc.start]:#04x}).", line, column) from None
    if len(text) > MAX_SPEC_BYTES:
        raise _file_error(path, f"is {len(text):,} characters; a spec may hold at most {MAX_SPEC_BYTES:,}.")
    try:
        root = yaml.compose(text, Loader=_SpecLoader)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_problem(exc, text, path)]) from None
    except _TooLarge as exc:
        raise _file_error(path, exc.message, exc.mark.line + 1, exc.mark.column + 1) from None
    except RecursionError:
        raise _file_error(path, "is nested too deeply to read.") from None
    if root is None:
        raise _file_error(path, "the file holds no YAML document; a spec needs at least a `checks:` list.")
    converter = _Converter(path)
    converter.positions[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
    try:
        data = converter.convert(root, ())
    except _Abort as abort:
        raise SpecError([abort.problem]) from None
    except RecursionError:
        raise _file_error(path, "is nested too deeply to read.") from None
    if converter.problems:
        raise SpecError(sorted(converter.problems, key=lambda p: (p.line, p.column)))
    return Located(data, converter.positions, path)


def _file_error(path: str, message: str, line: int = 1, column: int = 1) -> SpecError:
    return SpecError([SpecProblem(path, line, column, "(file)", message)])


def _line_column(text: str | bytes, index: int, newline: str | bytes = "\n") -> tuple[int, int]:
    head = text[:index]
    return head.count(newline) + 1, index - (head.rfind(newline) + 1) + 1


def _yaml_problem(exc: yaml.YAMLError, text: str, path: str) -> SpecProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError):
        what = " ".join(part for part in (exc.context, exc.problem) if part)
    else:
        what = str(exc).splitlines()[0]
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    elif isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_column(text, exc.position)
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        what = f"character {character!r} is not allowed in YAML"
    else:
        line, column = 1, 1
    return SpecProblem(path, line, column, "(file)", sentence(f"is not valid YAML: {what or type(exc).__name__}"))

