"""Spec files: YAML read with positions, validated into frozen models, every problem reported at once."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import fnmatch
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SerializeAsAny,
    Strict,
    ValidationError,
    WithJsonSchema,
    create_model,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import SpecError, SpecProblem
from .inputs import InputMode, InputSpec
from .layers import (
    SELECTOR_FORMS,
    BlockRange,
    LayerSelector,
    NamedRange,
    SelectorError,
    parse_selector,
    resolve_layers,
)

if TYPE_CHECKING:
    from .properties.base import PropertyDef

Registry = Mapping[str, "PropertyDef"]
KeyPath = tuple[Union[str, int], ...]

MAX_SPEC_BYTES = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64
THRESHOLD_LIMIT = 1e12
MAX_SEQUENCES = 1_000_000
MAX_TOKENS = 1_000_000
MAX_SEED = 2**63 - 1
SPEC_SUFFIXES = (".yaml", ".yml")
ROOT_MARKERS = (".git", "pyproject.toml")
SOURCE_MODES = ("text", "dataset")

# Mirrors the ``family`` of each table in geomcheck.adapters.TABLES (kept literal so reading a spec
# never imports torch); tests/test_spec.py checks the two agree.
Family = Literal["gpt2", "llama"]
Aggregation = Literal["aggregate", "per_layer"]


# ---------------------------------------------------------------- YAML with positions


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e5`` as a float, as YAML 1.2 does (PyYAML wants ``1.0e5``)."""


_SpecLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("null", "bool", "int", "float", "str")}
_TEXT_TAGS = {_TAG + "timestamp"}  # dates stay the text that was written
_MAP_TAG, _SEQ_TAG, _MERGE_TAG = _TAG + "map", _TAG + "seq", _TAG + "merge"


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
            try:
                return self.constructor.construct_object(node)
            except (ValueError, OverflowError):  # e.g. an integer past Python's 4300-digit limit
                kind = {"int": "an integer", "float": "a number"}.get(node.tag.rsplit(":", 1)[-1], "a value")
                self.problems.append(self._problem(node, key_path, f"cannot read {node.value[:40]!r} as {kind}."))
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
    return SpecProblem(path, line, column, "(file)", _sentence(f"is not valid YAML: {what or type(exc).__name__}"))


def format_key_path(key_path: KeyPath) -> str:
    """``('checks', 2, 'expect', 'min')`` -> ``checks[2].expect.min``."""
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


# ---------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _custom(message: str, hint: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("spec", "{message}", {"message": message, "hint": hint})


def _pair(value: object) -> object:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _custom(f"must be [low, high], two numbers; got {_got(value)}")
    return value


def _layers(value: object) -> LayerSelector:
    try:
        return parse_selector(value)
    except SelectorError as exc:
        raise _custom(exc.message, exc.hint) from None


def _layers_yaml(selector: LayerSelector) -> object:
    if isinstance(selector, NamedRange):
        return selector.value
    if isinstance(selector, BlockRange):
        return [selector.start, selector.end]
    return {"blocks": list(selector.blocks)}


_IDENTIFIER = re.compile(r"[A-Za-z0-9_.\-]+")


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise _custom(f"may hold only letters, digits, '_', '-' and '.'; got {_got(value)}")
    return value


Text = Annotated[str, Strict()]
Identifier = Annotated[str, Strict(), AfterValidator(_identifier)]
Threshold = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=-THRESHOLD_LIMIT, le=THRESHOLD_LIMIT)]
NonNegative = Annotated[float, Strict(), Field(allow_inf_nan=False, ge=0, le=THRESHOLD_LIMIT)]
LayersField = Annotated[
    LayerSelector,
    PlainValidator(_layers),
    PlainSerializer(_layers_yaml),
    WithJsonSchema(
        {
            "description": f"Blocks to measure: {SELECTOR_FORMS}. Negative indices count from the end.",
            "anyOf": [
                {"enum": [member.value for member in NamedRange]},
                {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                {
                    "type": "object",
                    "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
                    "additionalProperties": False,
                },
                {"type": "object", "properties": {"blocks": {"type": "array", "items": {"type": "integer"}, "minItems": 1}},
                 "required": ["blocks"], "additionalProperties": False},
            ],
        }
    ),
]


class AppliesTo(_Model):
    """Which models a spec is meant for; every constraint given must hold."""

    families: tuple[Family, ...] | None = Field(None, description="architecture families (adapters)")
    models: tuple[Text, ...] | None = Field(None, description="glob patterns on model references, case-insensitive")

    def matches(self, model_ref_text: str, family: str | None) -> bool:
        if self.families is not None and family not in self.families:
            return False
        if self.models is not None:
            ref = model_ref_text.strip().lower()
            names = {ref, ref.rstrip("/").rsplit("/", 1)[-1]}
            return any(fnmatch.fnmatchcase(name, pattern.lower()) for name in names for pattern in self.models)
        return True


class Inputs(_Model):
    """Input settings as written; unset fields inherit (check <- spec <- InputSpec defaults)."""

    mode: InputMode | None = None
    source: Text | None = Field(None, description="mode text: a file or folder inside the project; mode dataset: a dataset id")
    sequences: Annotated[int, Strict(), Field(ge=1, le=MAX_SEQUENCES)] | None = None
    tokens: Annotated[int, Strict(), Field(ge=1, le=MAX_TOKENS)] | None = Field(
        None, description="tokens per sequence, after the optional BOS"
    )
    seed: Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)] | None = None
    bos: Annotated[bool, Strict()] | None = Field(None, description="null: the model family's default")

    def over(self, base: InputSpec) -> InputSpec:
        """``base`` with the fields this block sets (an explicit ``bos: null`` resets to the family default)."""
        return dataclasses.replace(base, **{name: getattr(self, name) for name in self.model_fields_set})


class Expectation(_Model):
    """The pass condition: bounds (inclusive) on one metric, on its aggregate or on every layer."""

    metric: Text | None = Field(None, description="default: the property's default metric")
    on: Aggregation = "aggregate"
    min: Threshold | None = None
    max: Threshold | None = None
    between: Annotated[tuple[Threshold, Threshold], BeforeValidator(_pair)] | None = Field(None, description="[low, high], inclusive")
    mostly: Annotated[float, Strict(), Field(allow_inf_nan=False, gt=0, le=1)] | None = Field(
        None, description="on per_layer: the fraction of layers that must pass (default 1)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Expectation:
        if self.min is None and self.max is None and self.between is None:
            raise _custom("needs a bound: min, max or between: [low, high]")
        errors: list[InitErrorDetails] = []

        def add(key: str, message: str) -> None:
            errors.append(InitErrorDetails(type=_custom(message), loc=(key,), input=getattr(self, key)))

        if self.between is not None and (self.min is not None or self.max is not None):
            add("between", "give either between or min/max, not both")
        elif self.between is not None and self.between[0] > self.between[1]:
            add("between", f"low {_number(self.between[0])} is above high {_number(self.between[1])}")
        if self.min is not None and self.max is not None and self.min > self.max:
            add("max", f"must be ≥ min ({_number(self.min)}); got {_number(self.max)}")
        if self.mostly is not None and self.on != "per_layer":
            add("mostly", "applies only with on: per_layer")
        if errors:
            raise ValidationError.from_exception_data("Expectation", errors)
        return self

    @property
    def lower(self) -> float | None:
        return self.between[0] if self.between is not None else self.min

    @property
    def upper(self) -> float | None:
        return self.between[1] if self.between is not None else self.max

    @property
    def fraction(self) -> float:
        """Fraction of layers that must pass (per_layer); 1 unless ``mostly`` says otherwise."""
        return 1.0 if self.mostly is None else self.mostly

    def admits(self, value: float) -> bool:
        """True when ``value`` is finite and within the bounds (inclusive)."""
        if not math.isfinite(value):
            return False
        return (self.lower is None or value >= self.lower) and (self.upper is None or value <= self.upper)

    def condition(self) -> str:
        """``≥ 20``, ``≤ 0.5`` or ``in [0.1, 0.9]``."""
        if self.lower is not None and self.upper is not None:
            return f"in [{_number(self.lower)}, {_number(self.upper)}]"
        return f"≥ {_number(self.lower)}" if self.lower is not None else f"≤ {_number(self.upper)}"


class Tolerance(_Model):
    """Allowed drift from a recorded baseline: |new - old| <= abs + rel * |old|."""

    abs: NonNegative = 0.0
    rel: NonNegative = 0.0


class CheckDoc(_Model):
    """One check as written; ``params`` is validated against the property's own model afterwards."""

    id: Identifier | None = Field(None, description="unique in the file; default: the property name")
    property: Identifier = Field(description="registry key of the property to measure")
    params: dict[str, Any] | None = Field(None, description="the property's parameters")
    layers: LayersField = NamedRange.ALL
    inputs: Inputs | None = Field(None, description="merged over the spec's inputs")
    expect: Expectation
    tolerance: Tolerance | None = None
    reason: Text | None = Field(None, description="why this should hold: a paper, a figure, an observation")


class SpecDoc(_Model):
    """A spec file as written."""

    name: Text | None = Field(None, description="default: the file name without suffix")
    description: Text | None = None
    applies_to: AppliesTo | None = None
    inputs: Inputs | None = None
    checks: list[CheckDoc] = Field(min_length=1)


class Check(_Model):
    """One validated check, ready to run; ``location`` (``specs/llama.yaml:22``) is where it was written."""

    id: str
    property: str
    metric: str = Field(description="the metric compared: expect.metric or the property's default")
    params: SerializeAsAny[BaseModel] = Field(description="an instance of the property's Params model")
    layers: LayersField
    inputs: Inputs | None = None
    expect: Expectation
    tolerance: Tolerance | None = None
    reason: str | None = None
    file: str = Field(description="the spec file as shown to people (relative to the working directory)")
    line: int
    column: int

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def metric_is_default(self) -> bool:
        return self.expect.metric is None

    def resolve_layers(self, n_blocks: int) -> tuple[int, ...]:
        """The blocks this check measures in a model of ``n_blocks`` blocks; ValueError when out of range."""
        return resolve_layers(self.layers, n_blocks)

    def effective_inputs(self, spec: Spec) -> InputSpec:
        """InputSpec defaults, then the spec's ``inputs``, then this check's; text sources are absolute paths."""
        merged = spec.inputs.over(InputSpec())
        if self.inputs is not None:
            merged = self.inputs.over(merged)
        if merged.mode not in SOURCE_MODES and merged.source is not None:
            merged = dataclasses.replace(merged, source=None)
        return merged


class Spec(_Model):
    """A validated spec file."""

    path: Path
    file: str = Field(description="the path as shown to people (relative to the working directory)")
    name: str
    description: str | None = None
    applies_to: AppliesTo | None = None
    inputs: Inputs = Inputs()
    checks: tuple[Check, ...]

    @property
    def display_path(self) -> str:
        return self.file

    def matches(self, model_ref_text: str, family: str | None) -> bool:
        """Whether the spec is meant for this model (no ``applies_to``: every model)."""
        return self.applies_to is None or self.applies_to.matches(model_ref_text, family)

    def base_inputs(self) -> InputSpec:
        return self.inputs.over(InputSpec())


# ---------------------------------------------------------------- loading


def load_spec(path: str | os.PathLike[str], registry: Registry | None = None) -> Spec:
    """Read and validate one spec file; raises SpecError listing every problem in it."""
    path = Path(path)
    file = display_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError([SpecProblem(file, 1, 1, "(file)", f"cannot be read: {exc.strerror or exc}.")]) from None
    return _build(read_yaml(raw, file), path, _registry(registry), project_root(path))


def parse_spec(
    text: str | bytes,
    path: str | os.PathLike[str] = "<spec>",
    *,
    registry: Registry | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Spec:
    """Validate spec text as if read from ``path``; relative text sources resolve against ``root`` (default: cwd)."""
    path = Path(path)
    located = read_yaml(text, str(path))
    return _build(located, path, _registry(registry), Path(root) if root is not None else Path.cwd())


def load_specs(paths: Iterable[str | os.PathLike[str]], registry: Registry | None = None) -> list[Spec]:
    """Specs from files and folders (a folder's ``*.yaml`` / ``*.yml``, sorted); one SpecError for all files."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(sorted(p for p in entry.iterdir() if p.is_file() and p.suffix in SPEC_SUFFIXES))
        else:
            files.append(entry)
    specs: list[Spec] = []
    problems: list[SpecProblem] = []
    for file in files:
        try:
            specs.append(load_spec(file, registry))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def display_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)


def project_root(path: Path) -> Path:
    """The nearest folder above the spec holding .git or pyproject.toml; else the working directory."""
    for folder in path.resolve().parents:
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return Path.cwd()


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from .properties import REGISTRY

    return REGISTRY


def _build(located: Located, path: Path, registry: Registry, root: Path) -> Spec:
    data = located.data
    if not isinstance(data, dict):
        raise SpecError([located.problem((), f"must be a mapping with keys such as name, inputs and checks; got {_got(data)}.")])
    problems: list[SpecProblem] = []
    doc: SpecDoc | None = None
    try:
        doc = SpecDoc.model_validate(data)
    except ValidationError as exc:
        problems.extend(_translate(exc, located, SpecDoc))
    raw_checks = data.get("checks") if isinstance(data.get("checks"), list) else []
    bound = _bind_properties(located, raw_checks, registry, problems)
    _check_ids(located, raw_checks, problems)
    sources = _check_sources(located, data, raw_checks, root.resolve(), problems)
    if problems or doc is None:
        unique = {(p.line, p.column, p.key_path, p.message): p for p in problems}
        raise SpecError([unique[key] for key in sorted(unique)])

    def with_source(inputs: Inputs | None, key_path: KeyPath) -> Inputs | None:
        if inputs is None or key_path not in sources:
            return inputs
        return inputs.model_copy(update={"source": sources[key_path]})

    checks = []
    for index, written in enumerate(doc.checks):
        prop, params = bound[index]
        line, column = located.position(("checks", index))
        checks.append(
            Check(
                id=written.id or written.property,
                property=written.property,
                metric=written.expect.metric or prop.default_metric,
                params=params,
                layers=written.layers,
                inputs=with_source(written.inputs, ("checks", index, "inputs", "source")),
                expect=written.expect,
                tolerance=written.tolerance,
                reason=written.reason,
                file=located.path,
                line=line,
                column=column,
            )
        )
    return Spec(
        path=path,
        file=located.path,
        name=doc.name or path.stem,
        description=doc.description,
        applies_to=doc.applies_to,
        inputs=with_source(doc.inputs, ("inputs", "source")) or Inputs(),
        checks=tuple(checks),
    )


def _bind_properties(
    located: Located, raw_checks: list, registry: Registry, problems: list[SpecProblem]
) -> dict[int, tuple[Any, BaseModel]]:
    """Property lookup, params against the property's model, metric against its metrics."""
    bound: dict[int, tuple[Any, BaseModel]] = {}
    known = sorted(registry)
    for index, raw in enumerate(raw_checks):
        if not isinstance(raw, dict) or not isinstance(raw.get("property"), str):
            continue
        name = raw["property"]
        prop = registry.get(name)
        if prop is None:
            message = f"unknown property {name!r}; known properties: {', '.join(known)}."
            problems.append(located.problem(("checks", index, "property"), message, _closest(name, known)))
            continue
        expect = raw.get("expect")
        metric = expect.get("metric") if isinstance(expect, dict) else None
        if isinstance(metric, str) and metric not in prop.metrics:
            message = f"{name} has no metric {metric!r}; its metrics: {', '.join(prop.metrics)}."
            problems.append(located.problem(("checks", index, "expect", "metric"), message, _closest(metric, prop.metrics)))
        params = raw.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            continue
        try:
            bound[index] = (prop, prop.params.model_validate(params))
        except ValidationError as exc:
            problems.extend(_translate(exc, located, prop.params, prefix=("checks", index, "params")))
    return bound


def _check_ids(located: Located, raw_checks: list, problems: list[SpecProblem]) -> None:
    seen: dict[str, int] = {}
    for index, raw in enumerate(raw_checks):
        if not isinstance(raw, dict):
            continue
        explicit = raw.get("id")
        check_id = explicit if isinstance(explicit, str) else raw.get("property") if explicit is None else None
        if not isinstance(check_id, str):
            continue
        line = located.position(("checks", index))[0]
        if check_id not in seen:
            seen[check_id] = line
        elif isinstance(explicit, str):
            message = f"check id {check_id!r} is already used by the check on line {seen[check_id]}; ids must be unique in a file."
            problems.append(located.problem(("checks", index, "id"), message))
        else:
            message = f"the check id defaults to the property name {check_id!r}, already used by the check on line {seen[check_id]}."
            problems.append(located.problem(("checks", index), message, "give each check of the same property its own `id:`"))


def _check_sources(located: Located, data: dict, raw_checks: list, root: Path, problems: list[SpecProblem]) -> dict[KeyPath, str]:
    """Every text source must exist inside the project root; returns the absolute path for each one written."""

    Origin = tuple[str, KeyPath, Union[str, None], KeyPath]  # mode, where it was set, source, where it was set

    def fields(block: object, prefix: KeyPath, inherited: Origin) -> Origin:
        if not isinstance(block, dict):
            return inherited
        mode, mode_at, source, source_at = inherited
        if isinstance(block.get("mode"), str):
            mode, mode_at = block["mode"], prefix + ("mode",)
        if isinstance(block.get("source"), str):
            source, source_at = block["source"], prefix + ("source",)
        return mode, mode_at, source, source_at

    spec_level = fields(data.get("inputs"), ("inputs",), ("corpus", ("inputs",), None, ("inputs",)))
    targets = [spec_level]
    for index, raw in enumerate(raw_checks):
        if isinstance(raw, dict) and isinstance(raw.get("inputs"), dict):
            targets.append(fields(raw["inputs"], ("checks", index, "inputs"), spec_level))
    resolved: dict[KeyPath, str] = {}
    reported: set[KeyPath] = set()
    for mode, mode_at, source, source_at in targets:
        if mode not in SOURCE_MODES:
            continue
        if source is None:
            if mode_at not in reported:
                reported.add(mode_at)
                what = "a file or folder inside the project" if mode == "text" else "a dataset id"
                problems.append(located.problem(mode_at, f"input mode {mode!r} needs a source: {what}."))
            continue
        if mode != "text" or source_at in reported or source_at in resolved:
            continue
        path, message = _resolve_source(source, root)
        if message is not None:
            reported.add(source_at)
            problems.append(located.problem(source_at, message))
        else:
            resolved[source_at] = path
    return resolved


def _resolve_source(source: str, root: Path) -> tuple[str, str | None]:
    try:
        candidate = Path(source)
        full = (candidate if candidate.is_absolute() else root / candidate).resolve()
        exists = full.exists()
    except (OSError, ValueError) as exc:
        return "", f"text source {_got(source)} is not a usable path ({exc})."
    if not full.is_relative_to(root):
        return "", (
            f"text source {_got(source)} resolves to {full}, outside the project root {root}; "
            "keep input files inside the project."
        )
    if not exists:
        return "", f"text source {_got(source)} does not exist (looked for {full})."
    return str(full), None


# ---------------------------------------------------------------- error messages


def _translate(error: ValidationError, located: Located, model: type[BaseModel], prefix: KeyPath = ()) -> list[SpecProblem]:
    problems = []
    base = _child(located.data, prefix)
    for err in error.errors(include_url=False):
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
    got = _got(err.get("input"))
    if "message" in ctx:
        return _sentence(str(ctx["message"])), ctx.get("hint")
    if kind == "missing":
        return f"required key {key_path[-1]!r} is missing.", None
    if kind == "extra_forbidden":
        owner = _annotation_at(model, key_path[:-1])
        valid = sorted(_model_class(owner[0]).model_fields) if owner and _model_class(owner[0]) else []
        listing = f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"unknown key {key_path[-1]!r}{listing}.", _closest(str(key_path[-1]), valid)
    leaf = _annotation_at(model, key_path)
    if kind in _TYPE_ERRORS:
        return f"must be {_expected(leaf, finite=kind == 'finite_number')}; got {got}.", None
    if kind in ("literal_error", "enum"):
        choices = _choices(leaf) or re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        listing = ", ".join(repr(c) for c in choices) or ctx.get("expected", "")
        hint = _closest(err.get("input"), choices) if isinstance(err.get("input"), str) else None
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
    return _sentence(f"{text[:1].lower()}{text[1:]}; got {got}"), None


def _sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else text + "."


def _closest(word: str, choices: Sequence[str]) -> str | None:
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
            low = f"[{_number(item.ge)}"
        elif isinstance(item, annotated_types.Gt):
            low = f"({_number(item.gt)}"
        elif isinstance(item, annotated_types.Le):
            high = f"{_number(item.le)}]"
        elif isinstance(item, annotated_types.Lt):
            high = f"{_number(item.lt)})"
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


def _number(value: float) -> str:
    return f"{value:.12g}".replace("e+", "e")


def _got(value: object) -> str:
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
        return "nan" if math.isnan(value) else _number(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, dict):
        return "an empty mapping" if not value else "a mapping"
    if isinstance(value, (list, tuple)):
        text = repr(list(value)) if all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in value) else ""
        return text if text and len(text) <= 40 else f"a list of {len(value)} items"
    return type(value).__name__


# ---------------------------------------------------------------- schema


def json_schema(registry: Registry | None = None) -> dict[str, Any]:
    """JSON Schema of a spec file; with the property registry, each check's params and metric are typed too."""
    if registry is None:
        try:
            registry = _registry(None)
        except ImportError:
            registry = {}
    model = _typed_spec_model(registry) if registry else SpecDoc
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "geomcheck spec"
    return schema


def _typed_spec_model(registry: Registry) -> type[BaseModel]:
    variants = []
    for name, prop in sorted(registry.items()):
        expect = create_model(
            f"Expect_{name}",
            __base__=Expectation,
            metric=(Literal[tuple(prop.metrics)] | None, Field(None, description=f"default: {prop.default_metric}")),  # type: ignore
        )
        variants.append(
            create_model(
                f"Check_{name}",
                __base__=CheckDoc,
                __doc__=prop.summary,
                property=(Literal[name], Field(description=prop.summary)),  # type: ignore[valid-type]
                params=(prop.params | None, None),
                expect=(expect, ...),
            )
        )
    item: Any = variants[0] if len(variants) == 1 else Annotated[Union[tuple(variants)], Field(discriminator="property")]
    return create_model("Spec", __base__=SpecDoc, checks=(list[item], Field(min_length=1)))
