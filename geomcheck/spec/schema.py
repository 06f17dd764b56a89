"""A spec is validated in full into frozen models when it is collected, before any model loads; its schema lives here."""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

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

from geomcheck.capture.inputs import InputMode, InputSpec, check_local_dataset, text_source_files
from geomcheck.errors import InputError, SpecError, SpecProblem
from geomcheck.paths import MAX_NAME_LENGTH, is_safe_name, safe_component
from geomcheck.safe_read import UnsafeReadError, read_capped
from geomcheck.spec.layers import (
    SELECTOR_FORMS,
    BlockRange,
    Depth,
    LayerSelector,
    NamedRange,
    SelectorError,
    parse_selector,
    resolve_layers,
)
from geomcheck.spec.problems import (
    MAX_PROBLEMS,
    KeyPath,
    closest,
    format_key_path,
    show_number,
    show_value,
    translate,
)
from geomcheck.spec.yaml_positions import (
    MAX_DEPTH,
    MAX_NODES,
    MAX_SPEC_BYTES,
    Located,
    read_yaml,
)

if TYPE_CHECKING:
    from geomcheck.properties.base import PropertyDef

__all__ = [  # YAML reading and error wording moved out; everything stays importable from here
    "MAX_DEPTH", "MAX_NODES", "MAX_SEED", "MAX_SEQUENCES", "MAX_SPEC_BYTES", "MAX_TOKENS", "ROOT_MARKERS", "SOURCE_MODES",
    "SPEC_SUFFIXES", "THRESHOLD_LIMIT", "Aggregation", "AppliesTo", "Check", "CheckDoc", "Expectation", "Family", "Gate", "Inputs",
    "KeyPath", "Located", "Registry", "Spec", "SpecDoc", "Tolerance", "display_path", "format_key_path", "json_schema",
    "load_spec", "load_specs", "parse_spec", "project_root", "read_yaml",
]

Registry = Mapping[str, "PropertyDef"]

THRESHOLD_LIMIT = 1e12
MAX_SEQUENCES = 1_000_000
MAX_TOKENS = 1_000_000
MAX_SEED = 2**63 - 1
MAX_CHECKS = 1_000
SPEC_SUFFIXES = (".yaml", ".yml")
ROOT_MARKERS = (".git", "pyproject.toml")
# Read at most this much before parsing (yaml_positions then refuses more than MAX_SPEC_BYTES characters with
# the size): /dev/zero, a FIFO or a sparse multi-gigabyte file must never reach memory.
MAX_SPEC_READ = 4 * MAX_SPEC_BYTES
SOURCE_MODES = ("text", "dataset")

# Mirrors the ``family`` of each table in geomcheck.models.adapters.TABLES (kept literal so reading a spec
# never imports torch); tests/test_spec.py checks the two agree.
Family = Literal[
    "apertus", "biogpt", "bloom", "cohere", "falcon", "gemma2", "gpt2", "gpt_bigcode", "gpt_neo", "gpt_neox", "gptj",
    "granite", "llama", "llama-named", "olmo2", "opt", "phi", "stablelm", "vaultgemma", "xglm",
]
Aggregation = Literal["aggregate", "per_layer"]


# ---------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _custom(message: str, hint: str | None = None) -> PydanticCustomError:
    return PydanticCustomError("spec", "{message}", {"message": message, "hint": hint})


def _pair(value: object) -> object:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _custom(f"must be [low, high], two numbers; got {show_value(value)}")
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
        if isinstance(selector.start, Depth) or isinstance(selector.end, Depth):
            return {"from": _bound_yaml(selector.start), "to": _bound_yaml(selector.end)}
        return [selector.start, selector.end]
    return {"blocks": list(selector.blocks)}


def _bound_yaml(bound: int | Depth) -> int | float:
    return float(bound.fraction) if isinstance(bound, Depth) else bound


def _identifier(value: str) -> str:
    # Spec names and check ids become file names and baseline keys: one safe path component each.
    if not is_safe_name(value):
        raise _custom(
            f"must start with a letter or digit and hold only letters, digits, '_', '-' and '.' "
            f"(at most {MAX_NAME_LENGTH} characters); got {show_value(value)}"
        )
    return value


def _not_null(value: object) -> object:
    # ``seed: ~`` would otherwise reach InputSpec as None and run unseeded; a key with no value is a mistake.
    if value is None:
        raise _custom("must not be null; remove the key to inherit the value (from the spec's inputs, else the default)")
    return value


def _not_empty(value: tuple) -> tuple:
    if not value:
        raise _custom("an empty list matches no model, so every check would be skipped; remove the key to match every model")
    return value


def _no_surrogates(value: str) -> str:
    """Refuse lone surrogates (YAML's \\udXXX escapes): no file, terminal or page can show them, and they crashed reports."""
    bad = next((char for char in value if 0xD800 <= ord(char) < 0xE000), None)
    if bad is not None:
        raise _custom(f"holds an unpaired surrogate (\\u{ord(bad):04x}), which no file, terminal or page can show; remove it")
    return value


Text = Annotated[str, Strict(), AfterValidator(_no_surrogates)]
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
                    "properties": {
                        "from": {"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 0, "maximum": 1}]},
                        "to": {"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 0, "maximum": 1}]},
                    },
                    "additionalProperties": False,
                },
                {"type": "object", "properties": {"blocks": {"type": "array", "items": {"type": "integer"}, "minItems": 1}},
                 "required": ["blocks"], "additionalProperties": False},
            ],
        }
    ),
]


def _config_keys(value: dict) -> dict:
    if not value:
        raise PydanticCustomError("empty", "must name at least one config field")
    if len(value) > 64:
        raise PydanticCustomError("too_many", "at most 64 config fields")
    for key in value:
        if not (key.isascii() and key.isidentifier() and len(key) <= 64):
            raise PydanticCustomError("config_key", "config field {key!r} is not a config.json field name", {"key": key})
    return value


ConfigValue = Union[Annotated[bool, Strict()], Annotated[int, Strict()], Annotated[float, Strict(), Field(allow_inf_nan=False)], Text]


class AppliesTo(_Model):
    """Which models a spec is meant for; every constraint given must hold.

    ``config`` says what a model *is* (its config.json values: the shape of SmolLM2-135M, say), so a
    checkpoint of that model is recognised wherever it is saved; ``models`` globs match the reference
    the user typed, which for a local checkpoint is only where it lies. Prefer ``config`` for a spec
    meant for one model and its fine-tunes or conversions.
    """

    families: Annotated[tuple[Family, ...], AfterValidator(_not_empty)] | None = Field(None, description="architecture families (adapters)")
    models: Annotated[tuple[Text, ...], AfterValidator(_not_empty)] | None = Field(
        None, description="glob patterns on model references, case-insensitive"
    )
    config: Annotated[dict[str, ConfigValue], AfterValidator(_config_keys)] | None = Field(
        None, description="config.json values the model must have, compared exactly (e.g. hidden_size: 576)"
    )

    def matches(self, model_ref_text: str, family: str | None, config: object | None = None) -> bool:
        return not self.mismatch(model_ref_text, family, config)

    def mismatch(self, model_ref_text: str, family: str | None, config: object | None = None) -> str:
        """Which constraint a model fails, in words (the skip reason and the 'applies to nothing' warning); empty if none."""
        if self.families is not None and family not in self.families:
            return f"family {family} is not one of {', '.join(self.families)}"
        for key, value in (self.config or {}).items():
            if _config_value(config, key) != value:
                return f"config {key} is {_config_value(config, key)!r}, the spec wants {value!r}"
        if self.models is not None:
            ref = model_ref_text.strip().lower()
            names = {ref, ref.rstrip("/").rsplit("/", 1)[-1]}
            if not any(fnmatch.fnmatchcase(name, pattern.lower()) for name in names for pattern in self.models):
                return f"the reference {model_ref_text!r} matches none of {', '.join(self.models)}"
        return ""


def _config_value(config: object | None, key: str) -> object:
    value = getattr(config, key, None) if config is not None else None
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


class Inputs(_Model):
    """Input settings as written; unset fields inherit (check <- spec <- InputSpec defaults)."""

    # None is the "not written" default only; an explicit null is refused (BeforeValidator), bos aside.
    mode: Annotated[InputMode | None, BeforeValidator(_not_null)] = None
    source: Annotated[Text | None, BeforeValidator(_not_null)] = Field(
        None, description="mode text: a file or folder inside the project; mode dataset: a dataset id"
    )
    sequences: Annotated[Annotated[int, Strict(), Field(ge=1, le=MAX_SEQUENCES)] | None, BeforeValidator(_not_null)] = None
    tokens: Annotated[Annotated[int, Strict(), Field(ge=1, le=MAX_TOKENS)] | None, BeforeValidator(_not_null)] = Field(
        None, description="tokens per sequence, after the optional BOS"
    )
    seed: Annotated[Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)] | None, BeforeValidator(_not_null)] = None
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
            add("between", f"low {show_number(self.between[0])} is above high {show_number(self.between[1])}")
        if self.min is not None and self.max is not None and self.min > self.max:
            add("max", f"must be ≥ min ({show_number(self.min)}); got {show_number(self.max)}")
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
            return f"in [{show_number(self.lower)}, {show_number(self.upper)}]"
        return f"≥ {show_number(self.lower)}" if self.lower is not None else f"≤ {show_number(self.upper)}"


class Tolerance(_Model):
    """Allowed drift from a recorded baseline: |new - old| <= abs + rel * |old|."""

    abs: NonNegative = 0.0
    rel: NonNegative = 0.0


class Gate(_Model):
    """How a check is compared with its baseline (see geomcheck.gate.drift); unset fields inherit spec, then defaults."""

    alpha: Annotated[float, Strict(), Field(allow_inf_nan=False, gt=0, le=0.2)] | None = Field(
        None, description="false-alarm rate of the check under fresh inputs (Holm over its gated values); default 0.01"
    )
    min_change: Tolerance | None = Field(
        None, description="changes within abs + rel * |baseline| never alarm; default: the property's per-metric floor"
    )
    values: Aggregation | None = Field(None, description="gate the aggregate or every layer's value; default: expect.on")
    profile: Annotated[bool, Strict()] | None = Field(
        None, description="on the baseline's own inputs, also hold every block's profile metrics to their floors; default true"
    )

    def over(self, base: Gate | None) -> Gate:
        if base is None:
            return self
        return base.model_copy(update={name: getattr(self, name) for name in self.model_fields_set})


class CheckDoc(_Model):
    """One check as written; ``params`` is validated against the property's own model afterwards."""

    id: Identifier | None = Field(None, description="unique in the file; default: the property name")
    property: Identifier = Field(description="registry key of the property to measure")
    params: dict[str, Any] | None = Field(None, description="the property's parameters")
    layers: LayersField = NamedRange.ALL
    inputs: Inputs | None = Field(None, description="merged over the spec's inputs")
    expect: Expectation
    tolerance: Tolerance | None = Field(None, description="fixed drift band instead of the statistical gate (explicit override)")
    gate: Gate | None = Field(None, description="statistical drift test against the baseline")
    reason: Text | None = Field(None, description="why this should hold: a paper, a figure, an observation")


class SpecDoc(_Model):
    """A spec file as written."""

    name: Identifier | None = Field(None, description="default: the file name without suffix; names the baseline file")
    description: Text | None = None
    applies_to: AppliesTo | None = None
    inputs: Inputs | None = None
    gate: Gate | None = Field(None, description="defaults for every check's gate")
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
    gate: Gate = Gate()
    reason: str | None = None
    file: str = Field(description="the spec file as shown to people (relative to the working directory)")
    line: int
    column: int
    layers_line: int | None = Field(None, description="where the check's layers: key was written (None: not written)")

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def layers_location(self) -> str:
        """``file:line`` of the ``layers:`` key, where a range that does not fit a model is fixed (else the check's line)."""
        return f"{self.file}:{self.layers_line or self.line}"

    @property
    def gates_per_layer(self) -> bool:
        """Whether the baseline gate tests every layer's value (else only the aggregate)."""
        return (self.gate.values or self.expect.on) == "per_layer"

    @property
    def metric_is_default(self) -> bool:
        return self.expect.metric is None

    def resolve_layers(self, n_blocks: int) -> tuple[int, ...]:
        """The blocks this check measures in a model of ``n_blocks`` blocks; ValueError when out of range."""
        return resolve_layers(self.layers, n_blocks)

    def effective_inputs(self, spec: Spec) -> InputSpec:
        """InputSpec defaults, then the spec's ``inputs``, then this check's; text sources are absolute paths."""
        merged = spec.base_inputs()
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
    warnings: tuple[str, ...] = Field((), description="file:line: lines for checks that are valid but likely mistaken")
    root: Path | None = Field(None, exclude=True, description="the project root every input file must lie in, links followed")

    @property
    def display_path(self) -> str:
        return self.file

    def matches(self, model_ref_text: str, family: str | None, config: object | None = None) -> bool:
        """Whether the spec is meant for this model (no ``applies_to``: every model)."""
        return self.applies_to is None or self.applies_to.matches(model_ref_text, family, config)

    def base_inputs(self) -> InputSpec:
        return self.inputs.over(InputSpec(root=str(self.root) if self.root is not None else None))


# ---------------------------------------------------------------- loading


def load_spec(path: str | os.PathLike[str], registry: Registry | None = None) -> Spec:
    """Read and validate one spec file; raises SpecError listing every problem in it."""
    path = Path(path)
    file = display_path(path)
    if not path.exists() and not path.is_symlink():
        raise SpecError([SpecProblem(file, 1, 1, "(file)", "no such spec file.", missing_spec_hint(path))]) from None
    try:
        raw = read_capped(path, MAX_SPEC_READ, "spec file")
    except UnsafeReadError as exc:
        raise SpecError([SpecProblem(file, 1, 1, "(file)", f"cannot be read: {exc}.")]) from None
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
    problems: list[SpecProblem] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            # adapters.yaml beside the specs declares module layouts (models.adapters.user_tables), it is no spec.
            found = sorted(p for p in entry.iterdir() if p.is_file() and p.suffix in SPEC_SUFFIXES and p.name != "adapters.yaml")
            if not found:  # a run that checks nothing must not pass
                message = f"the folder holds no {' or '.join(SPEC_SUFFIXES)} spec files, so there is nothing to check."
                problems.append(SpecProblem(display_path(entry), 1, 1, "(folder)", message))
            files.extend(found)
        else:
            files.append(entry)
    specs: list[Spec] = []
    for file in files:
        try:
            specs.append(load_spec(file, registry))
        except SpecError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SpecError(problems)
    return specs


def missing_spec_hint(path: Path) -> str:
    """The nearest spec beside a misspelled path, and the built-in specs, for a path that does not exist."""
    import difflib

    from geomcheck.spec import builtin

    folder = path.parent if path.parent.is_dir() else Path(".")
    beside = [p.name for p in folder.iterdir() if p.suffix in SPEC_SUFFIXES] if folder.is_dir() else []
    close = difflib.get_close_matches(path.name, beside, n=1)
    near = f"did you mean {display_path(folder / close[0])}? " if close else ""
    return f"{near}Built-in specs: {', '.join(builtin.PREFIX + name for name in builtin.names())}"


def display_path(path: Path) -> str:
    from geomcheck.spec import builtin

    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (OSError from Python 3.13)
        # Outside the working directory: a shipped spec reads as builtin:NAME wherever geomcheck is installed
        # (in a checkout, where they are specs/*.yaml, they keep their path).
        return builtin.label(path) or str(path)


def project_root(path: Path) -> Path:
    """The nearest folder above the spec holding .git or pyproject.toml; else the working directory."""
    try:
        resolved = path.resolve()
    except RuntimeError:  # a symlink loop; reading the file fails with its own message
        return Path.cwd()
    for folder in resolved.parents:
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return Path.cwd()


def _registry(registry: Registry | None) -> Registry:
    if registry is not None:
        return registry
    from geomcheck.properties import REGISTRY

    return REGISTRY


def _build(located: Located, path: Path, registry: Registry, root: Path) -> Spec:
    data = located.data
    if not isinstance(data, dict):
        raise SpecError([located.problem((), f"must be a mapping with keys such as name, inputs and checks; got {show_value(data)}.")])
    checks_written = data.get("checks")
    if isinstance(checks_written, list) and len(checks_written) > MAX_CHECKS:  # refused before thousands of errors are built
        message = f"holds {len(checks_written):,} checks; a spec may hold at most {MAX_CHECKS:,}. Split it into several files."
        raise SpecError([located.problem(("checks",), message)])
    problems: list[SpecProblem] = []
    doc: SpecDoc | None = None
    try:
        doc = SpecDoc.model_validate(data)
    except ValidationError as exc:
        problems.extend(translate(exc, located, SpecDoc))
    raw_checks = data.get("checks") if isinstance(data.get("checks"), list) else []
    bound = _bind_properties(located, raw_checks, registry, problems)
    _check_ids(located, raw_checks, problems)
    sources = _check_sources(located, data, raw_checks, root.resolve(), problems)
    warnings = _check_meaning(located, doc, registry, problems) if doc is not None else []
    if problems or doc is None:
        unique = {(p.line, p.column, p.key_path, p.message): p for p in problems}
        shown = [unique[key] for key in sorted(unique)]
        if len(shown) > MAX_PROBLEMS:
            more = shown[MAX_PROBLEMS]
            shown = shown[:MAX_PROBLEMS] + [dataclasses.replace(more, message=f"... and {len(unique) - MAX_PROBLEMS} more problems not shown.", hint=None)]
        raise SpecError(shown)

    def with_source(inputs: Inputs | None, key_path: KeyPath) -> Inputs | None:
        if inputs is None or key_path not in sources:
            return inputs
        return inputs.model_copy(update={"source": sources[key_path]})

    checks = []
    for index, written in enumerate(doc.checks):
        prop, params = bound[index]
        line, column = located.position(("checks", index))
        layers_at = ("checks", index, "layers")
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
                gate=(written.gate or Gate()).over(doc.gate),
                reason=written.reason,
                file=located.path,
                line=line,
                column=column,
                layers_line=located.positions[layers_at][0] if layers_at in located.positions else None,
            )
        )
    return Spec(
        path=path,
        file=located.path,
        name=doc.name or safe_component(path.stem, "spec"),
        description=doc.description,
        applies_to=doc.applies_to,
        inputs=with_source(doc.inputs, ("inputs", "source")) or Inputs(),
        checks=tuple(checks),
        warnings=tuple(warnings),
        root=root.resolve(),
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
            problems.append(located.problem(("checks", index, "property"), message, closest(name, known)))
            continue
        expect = raw.get("expect")
        metric = expect.get("metric") if isinstance(expect, dict) else None
        if isinstance(metric, str) and metric not in prop.metrics:
            message = f"{name} has no metric {metric!r}; its metrics: {', '.join(prop.metrics)}."
            problems.append(located.problem(("checks", index, "expect", "metric"), message, closest(metric, prop.metrics)))
        params = raw.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            continue
        try:
            # Strict, as JSON: a quoted '8' or a 1.0 for an integer is the author's mistake, not a value to
            # coerce; JSON mode still reads an enum from its string and an integer as a float.
            bound[index] = (prop, prop.params.model_validate_json(json.dumps(params), strict=True))
        except ValidationError as exc:
            problems.extend(translate(exc, located, prop.params, prefix=("checks", index, "params")))
    return bound


def _check_meaning(located: Located, doc: SpecDoc, registry: Registry, problems: list[SpecProblem]) -> list[str]:
    """Checks that validate but can never say anything: problems where no use exists, warnings where one does."""
    warnings: list[str] = []
    spec_inputs = (doc.inputs or Inputs()).over(InputSpec())
    for index, written in enumerate(doc.checks):
        prop = registry.get(written.property)
        if prop is None:
            continue
        at: KeyPath = ("checks", index)
        metric = written.expect.metric or prop.default_metric
        name = f"{prop.name}.{metric}"
        per_layer = getattr(prop, "per_layer_metrics", None)
        if written.expect.on == "per_layer" and per_layer is not None and metric not in per_layer:
            listed = ", ".join(per_layer) or "none"
            message = f"{name} has only an aggregate value, so on: per_layer has nothing to compare; use on: aggregate."
            problems.append(located.problem(at + ("expect", "on"), message, f"metrics of {prop.name} with per-layer values: {listed}"))
        inputs = written.inputs.over(spec_inputs) if written.inputs is not None else spec_inputs
        single = _single_position(inputs)
        if single and metric in getattr(prop, "positional_metrics", ()):
            where = at + ("inputs",) if written.inputs is not None else ("inputs",)
            message = f"{name} compares positions, but these inputs give sequences of one position ({single})."
            problems.append(located.problem(where, message, "use another input mode or more tokens, or set bos: true"))
        low, high = written.expect.lower, written.expect.upper
        if low is not None and low == high and metric not in getattr(prop, "integer_metrics", ()):
            key = "between" if written.expect.between is not None else "max"
            message = (f"warning: the band [{show_number(low)}, {show_number(high)}] has zero width, so only a value of "
                       f"exactly {show_number(low)} passes {name}; widen it unless that is intended.")
            warnings.append(str(located.problem(at + ("expect", key), message)))
    return warnings


def _single_position(inputs: InputSpec) -> str | None:
    """Why sequences built from ``inputs`` hold exactly one position, or None when they may hold more."""
    if inputs.mode == "single_token" and inputs.bos is not True:
        return "mode single_token without bos: true"
    if inputs.mode != "single_token" and inputs.tokens == 1 and inputs.bos is False:
        return "tokens: 1 with bos: false"
    return None


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
        if source_at in reported or source_at in resolved:
            continue
        if mode == "dataset":
            message = _local_dataset_problem(source, root)
            if message is not None:
                reported.add(source_at)
                problems.append(located.problem(source_at, message))
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
    except RuntimeError:  # Path.resolve on a symlink loop (Python 3.13 raises OSError instead)
        return "", f"text source {show_value(source)} is a symlink loop; point it at a real file or folder."
    except (OSError, ValueError) as exc:
        if getattr(exc, "errno", None) == errno.ELOOP:
            return "", f"text source {show_value(source)} is a symlink loop; point it at a real file or folder."
        return "", f"text source {show_value(source)} is not a usable path ({exc})."
    if not full.is_relative_to(root):
        return "", (
            f"text source {show_value(source)} resolves to {full}, outside the project root {root}; "
            "keep input files inside the project."
        )
    if not exists:
        return "", f"text source {show_value(source)} does not exist (looked for {full})."
    try:
        text_source_files(str(full), str(root))
    except InputError as exc:
        return "", f"text source {show_value(source)}: {exc}."
    return str(full), None


def _local_dataset_problem(source: str, root: Path) -> str | None:
    """A dataset id naming local files is held to the text sources' rules (``datasets`` would read them)."""
    try:
        check_local_dataset(source, str(root))
    except InputError as exc:
        return f"dataset source {show_value(source)}: {exc}."
    return None



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
