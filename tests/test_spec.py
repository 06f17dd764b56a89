"""Spec files: every problem located (file:line:column, key path), with hints; valid specs fill defaults."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from geomcheck.capture.inputs import InputSpec
from geomcheck.errors import SpecError, SpecProblem
from geomcheck.properties.base import MetricSpec, PropertyDef, PropertyParams
from geomcheck.spec.layers import BlockList, BlockRange, NamedRange
from geomcheck.spec.schema import (
    MAX_SPEC_BYTES,
    Check,
    Spec,
    json_schema,
    load_spec,
    load_specs,
    parse_spec,
)


class Kind(str, enum.Enum):
    ATTN = "attn"
    MLP = "mlp"


class FirstPositionParams(PropertyParams):
    site: Literal["resid_post", "resid_mid", "attn_out"] = "resid_post"
    position: int = Field(0, ge=0, le=64)
    fraction: float = Field(0.5, ge=0, le=1)


class GrowthParams(PropertyParams):
    kind: Kind


def _unused(*args: object) -> None:
    raise AssertionError("spec loading must not measure anything")


def _per_layer(name: str) -> MetricSpec:
    """A metric with per-layer values, as the parser sees it (its numbers are never computed here)."""
    return MetricSpec(name, name, "value", per_layer=True)


REGISTRY = {
    "first_position_norm": PropertyDef(
        "first_position_norm", FirstPositionParams, _unused, _unused, "norm at position 0", (_per_layer("ratio"), _per_layer("norm")), "ratio"
    ),
    "layer_norm_growth": PropertyDef("layer_norm_growth", GrowthParams, _unused, _unused, "norm growth", (_per_layer("growth"),), "growth"),
}

CHECK = "checks:\n  - property: first_position_norm\n"
VALID = """\
name: llama
description: "position 0 is an attention sink"
applies_to:
  families: [llama]
  models: ["smollm2-*"]
inputs:
  mode: corpus
  sequences: 16
  tokens: 128
checks:
  - id: massive_first_position
    property: first_position_norm
    params: {site: resid_post}
    layers: intermediate
    inputs: {mode: repeated_token, sequences: 8, tokens: 64}
    expect:
      on: per_layer
      min: 20
      mostly: 0.9
    tolerance: {abs: 0.0, rel: 0.1}
    reason: "Ning & Rangaraju 2025, Fig. 3"
  - property: layer_norm_growth
    params: {kind: mlp}
    layers: {from: 2, to: -3}
    expect: {between: [1, 3]}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A project root (pyproject.toml) as the working directory; returns a writer for spec files."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    monkeypatch.chdir(tmp_path)

    def write(text: str | bytes, name: str = "specs/llama.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    return write


def problems(path: Path) -> list[SpecProblem]:
    with pytest.raises(SpecError) as info:
        load_spec(path, REGISTRY)
    assert info.value.problems, "a SpecError must hold at least one problem"
    for problem in info.value.problems:
        assert problem.line >= 1 and problem.column >= 1
        assert str(problem).startswith(f"{problem.path}:{problem.line}:{problem.column}: ")
    return info.value.problems


def only(path: Path) -> SpecProblem:
    found = problems(path)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


# ---------------------------------------------------------------- valid specs and defaults


def test_valid_spec_loads_with_locations(project) -> None:
    spec = load_spec(project(VALID), REGISTRY)
    assert isinstance(spec, Spec)
    assert spec.name == "llama" and spec.file == "specs/llama.yaml"
    first, second = spec.checks
    assert isinstance(first, Check)
    assert (first.id, first.line, first.column, first.location) == ("massive_first_position", 11, 5, "specs/llama.yaml:11")
    assert first.params == FirstPositionParams(site="resid_post")
    assert first.layers is NamedRange.INTERMEDIATE
    assert first.expect.on == "per_layer" and first.expect.lower == 20 and first.expect.fraction == 0.9
    assert first.tolerance is not None and first.tolerance.rel == 0.1
    assert first.reason.startswith("Ning")
    assert second.id == "layer_norm_growth" and second.line == 22
    assert second.params == GrowthParams(kind=Kind.MLP)
    assert second.layers == BlockRange(2, -3)
    assert second.resolve_layers(12) == tuple(range(2, 10))
    assert (second.expect.lower, second.expect.upper) == (1.0, 3.0)


def test_defaults(project) -> None:
    spec = load_spec(project("checks:\n  - property: first_position_norm\n    expect: {min: 1}\n", "specs/base.yaml"), REGISTRY)
    check = spec.checks[0]
    assert spec.name == "base" and spec.description is None and spec.applies_to is None
    assert check.id == "first_position_norm"
    assert check.metric == "ratio" and check.metric_is_default
    assert check.layers is NamedRange.ALL
    assert check.params == FirstPositionParams()
    assert check.expect.on == "aggregate" and check.expect.mostly is None and check.expect.fraction == 1.0
    assert check.tolerance is None and check.reason is None
    assert check.effective_inputs(spec) == InputSpec()
    assert spec.matches("anything", None)


def test_effective_inputs_merge_check_over_spec_over_defaults(project) -> None:
    (Path.cwd() / "data").mkdir()
    (Path.cwd() / "data" / "story.txt").write_text("once upon a time")
    spec = load_spec(
        project(
            """\
inputs: {mode: text, source: data/story.txt, sequences: 4, bos: false}
checks:
  - {id: a, property: first_position_norm, expect: {min: 1}}
  - {id: b, property: first_position_norm, expect: {min: 1}, inputs: {tokens: 32, bos: null}}
  - {id: c, property: first_position_norm, expect: {min: 1}, inputs: {mode: single_token, seed: 3}}
"""
        ),
        REGISTRY,
    )
    source = str((Path.cwd() / "data" / "story.txt").resolve())
    a, b, c = (check.effective_inputs(spec) for check in spec.checks)
    assert a == InputSpec(mode="text", source=source, sequences=4, tokens=256, seed=0, bos=False)
    assert b == InputSpec(mode="text", source=source, sequences=4, tokens=32, seed=0, bos=None)
    assert c == InputSpec(mode="single_token", source=None, sequences=4, tokens=256, seed=3, bos=False)


def test_explicit_metric_is_kept(project) -> None:
    spec = load_spec(project("checks:\n  - property: first_position_norm\n    expect: {metric: norm, max: 5}\n"), REGISTRY)
    assert spec.checks[0].metric == "norm" and not spec.checks[0].metric_is_default


def test_yaml_1_1_pitfalls_are_avoided(project) -> None:
    """`on:` stays a key (not True) and `1e5` is a number, as a person reading the file expects."""
    spec = load_spec(project("checks:\n  - property: first_position_norm\n    expect: {on: per_layer, max: 1e5, min: -2E-3}\n"), REGISTRY)
    assert spec.checks[0].expect.on == "per_layer"
    assert (spec.checks[0].expect.lower, spec.checks[0].expect.upper) == (-0.002, 1e5)


def test_layer_selector_forms(project) -> None:
    spec = load_spec(
        project(
            """\
checks:
  - {id: a, property: first_position_norm, expect: {min: 1}, layers: late}
  - {id: b, property: first_position_norm, expect: {min: 1}, layers: [12, -3]}
  - {id: c, property: first_position_norm, expect: {min: 1}, layers: {from: 12, to: -3}}
  - {id: d, property: first_position_norm, expect: {min: 1}, layers: [1, 5, 9]}
  - {id: e, property: first_position_norm, expect: {min: 1}, layers: {blocks: [1, 9]}}
"""
        ),
        REGISTRY,
    )
    assert [check.layers for check in spec.checks] == [
        NamedRange.LATE, BlockRange(12, -3), BlockRange(12, -3), BlockList((1, 5, 9)), BlockList((1, 9))
    ]
    assert spec.checks[1].resolve_layers(30) == tuple(range(12, 28))


def test_merge_keys_share_settings(project) -> None:
    spec = load_spec(
        project(
            """\
checks:
  - &base {id: a, property: first_position_norm, layers: late, expect: {min: 1}}
  - <<: *base
    id: b
"""
        ),
        REGISTRY,
    )
    assert [(c.id, c.layers) for c in spec.checks] == [("a", NamedRange.LATE), ("b", NamedRange.LATE)]


def test_matches_families_and_model_globs(project) -> None:
    spec = load_spec(project(VALID), REGISTRY)
    assert spec.matches("smollm2-135m", "llama")
    assert spec.matches("HuggingFaceTB/SmolLM2-135M", "llama")
    assert not spec.matches("smollm2-135m", "gpt2")
    assert not spec.matches("meta-llama/Llama-3.2-1B", "llama")
    gpt2_only = load_spec(project("applies_to: {families: [gpt2]}\n" + CHECK + "    expect: {min: 1}\n", "specs/g.yaml"), REGISTRY)
    assert gpt2_only.matches("anything", "gpt2") and not gpt2_only.matches("anything", None)


def test_parse_spec_from_text() -> None:
    spec = parse_spec(VALID, "specs/inline.yaml", registry=REGISTRY)
    assert spec.name == "llama" and spec.checks[0].location == "specs/inline.yaml:11"


# ---------------------------------------------------------------- error messages


def test_message_template_matches_house_style(project) -> None:
    path = project("name: llama\nchecks:\n  - property: first_position_norm\n    expect:\n      min: high\n")
    assert str(only(path)) == "specs/llama.yaml:5:7: checks[0].expect.min: must be a number in [-1e12, 1e12]; got 'high'."


@pytest.mark.parametrize(
    ("text", "key_path", "line", "fragment", "hint"),
    [
        # unknown keys, with and without a close match
        (CHECK + "    expect: {mn: 20}\n", "checks[0].expect.mn", 3, "unknown key 'mn'; valid keys: between, max, metric, min, mostly, on.", "did you mean 'min'?"),
        (CHECK + "    expect: {min: 1}\n    reasn: x\n", "checks[0].reasn", 4, "unknown key 'reasn'", "did you mean 'reason'?"),
        (CHECK + "    expect: {min: 1}\n    zzz: x\n", "checks[0].zzz", 4, "unknown key 'zzz'; valid keys: expect, gate, id,", None),
        ("nmae: x\n" + CHECK + "    expect: {min: 1}\n", "nmae", 1, "unknown key 'nmae'", "did you mean 'name'?"),
        # wrong types and ranges
        (CHECK + "    expect: {min: true}\n", "checks[0].expect.min", 3, "must be a number in [-1e12, 1e12]; got true.", None),
        (CHECK + "    expect: {min: 1, mostly: 0}\n", "checks[0].expect.mostly", 3, "must be a number in (0, 1]; got 0.", None),
        (CHECK + "    expect: {min: 1, on: per_layer, mostly: 1.5}\n", "checks[0].expect.mostly", 3, "must be a number in (0, 1]; got 1.5.", None),
        (CHECK + "    expect: {min: 1, on: perlayer}\n", "checks[0].expect.on", 3, "must be one of 'aggregate', 'per_layer'; got 'perlayer'.", "did you mean 'per_layer'?"),
        (CHECK + "    expect: {min: 1}\n    reason: 12\n", "checks[0].reason", 4, "must be a string; got 12.", None),
        (CHECK + "    expect: {min: 1}\n    tolerance: {rel: -0.1}\n", "checks[0].tolerance.rel", 4, "must be a number in [0, 1e12]; got -0.1.", None),
        (CHECK + "    expect: [1]\n", "checks[0].expect", 3, "must be a mapping (key: value lines); got [1].", None),
        (CHECK + "    expect:\n", "checks[0].expect", 3, "must be a mapping (key: value lines); got null.", None),
        (CHECK + "    expect: {min: 1}\n    id: has space\n", "checks[0].id", 4, "hold only letters, digits", None),
        # huge numbers, infinities, NaN
        (CHECK + "    expect: {min: .inf}\n", "checks[0].expect.min", 3, "must be a finite number in [-1e12, 1e12]; got inf.", None),
        (CHECK + "    expect: {max: .nan}\n", "checks[0].expect.max", 3, "must be a finite number in [-1e12, 1e12]; got nan.", None),
        (CHECK + "    expect: {max: 1e400}\n", "checks[0].expect.max", 3, "got inf.", None),
        (CHECK + "    expect: {max: 1e13}\n", "checks[0].expect.max", 3, "must be a number in [-1e12, 1e12]; got 1e13.", None),
        (CHECK + "    expect: {max: 123456789012345678901234567890}\n", "checks[0].expect.max", 3, "got an integer of about 30 digits.", None),
        (CHECK + "    expect: {max: " + "9" * 5000 + "}\n", "checks[0].expect.max", 3, "cannot read '9999", None),
        # bounds that contradict each other or are missing
        (CHECK + "    expect: {min: 5, max: 1}\n", "checks[0].expect.max", 3, "must be ≥ min (5); got 1.", None),
        (CHECK + "    expect: {between: [5, 1]}\n", "checks[0].expect.between", 3, "low 5 is above high 1.", None),
        (CHECK + "    expect: {between: [1, 5], min: 0}\n", "checks[0].expect.between", 3, "either between or min/max", None),
        (CHECK + "    expect: {between: [1]}\n", "checks[0].expect.between", 3, "must be [low, high], two numbers; got [1].", None),
        (CHECK + "    expect: {between: [1, x]}\n", "checks[0].expect.between[1]", 3, "must be a number", None),
        (CHECK + "    expect: {min: 1, mostly: 0.5}\n", "checks[0].expect.mostly", 3, "applies only with on: per_layer.", None),
        (CHECK + "    expect: {on: per_layer}\n", "checks[0].expect", 3, "needs a bound: min, max or between", None),
        # inputs
        ("inputs: {sequences: 0}\n" + CHECK + "    expect: {min: 1}\n", "inputs.sequences", 1, "must be an integer in [1, 1000000]; got 0.", None),
        ("inputs: {sequences: '32'}\n" + CHECK + "    expect: {min: 1}\n", "inputs.sequences", 1, "got '32'.", None),
        ("inputs: {tokens: 2.5}\n" + CHECK + "    expect: {min: 1}\n", "inputs.tokens", 1, "must be an integer in [1, 1000000]; got 2.5.", None),
        ("inputs: {seed: -1}\n" + CHECK + "    expect: {min: 1}\n", "inputs.seed", 1, "must be an integer in [0, ", None),
        ("inputs: {bos: maybe}\n" + CHECK + "    expect: {min: 1}\n", "inputs.bos", 1, "must be true or false; got 'maybe'.", None),
        ("inputs: {mode: corpse}\n" + CHECK + "    expect: {min: 1}\n", "inputs.mode", 1, "must be one of 'corpus', 'text', 'dataset', 'single_token', 'repeated_token'", "did you mean 'corpus'?"),
        (CHECK + "    inputs: {mode: dataset}\n    expect: {min: 1}\n", "checks[0].inputs.mode", 3, "input mode 'dataset' needs a source: a dataset id.", None),
        ("inputs: {mode: text}\n" + CHECK + "    expect: {min: 1}\n", "inputs.mode", 1, "input mode 'text' needs a source", None),
        # applies_to
        ("applies_to: {families: [lama]}\n" + CHECK + "    expect: {min: 1}\n", "applies_to.families[0]", 1, "'llama', 'llama-named', 'olmo2', 'opt', 'phi', 'stablelm', 'vaultgemma', 'xglm'; got 'lama'.", "did you mean 'llama'?"),
        ("applies_to: {families: llama}\n" + CHECK + "    expect: {min: 1}\n", "applies_to.families", 1, "must be a list; got 'llama'.", None),
        # properties, params and metrics (checked against the registry)
        ("checks:\n  - property: first_postion_norm\n    expect: {min: 1}\n", "checks[0].property", 2, "unknown property 'first_postion_norm'; known properties: first_position_norm, layer_norm_growth.", "did you mean 'first_position_norm'?"),
        ("checks:\n  - property: curvature\n    expect: {min: 1}\n", "checks[0].property", 2, "unknown property 'curvature'", None),
        (CHECK + "    params: {sight: resid_post}\n    expect: {min: 1}\n", "checks[0].params.sight", 3, "unknown key 'sight'; valid keys: fraction, position, site.", "did you mean 'site'?"),
        (CHECK + "    params: {site: resid_pst}\n    expect: {min: 1}\n", "checks[0].params.site", 3, "must be one of 'resid_post', 'resid_mid', 'attn_out'; got 'resid_pst'.", "did you mean 'resid_post'?"),
        (CHECK + "    params:\n      fraction: high\n    expect: {min: 1}\n", "checks[0].params.fraction", 4, "must be a number in [0, 1]; got 'high'.", None),
        (CHECK + "    params: {position: 65}\n    expect: {min: 1}\n", "checks[0].params.position", 3, "must be an integer in [0, 64]; got 65.", None),
        (CHECK + "    params: [site]\n    expect: {min: 1}\n", "checks[0].params", 3, "must be a mapping", None),
        ("checks:\n  - property: layer_norm_growth\n    expect: {min: 1}\n", "checks[0].params.kind", 2, "required key 'kind' is missing.", None),
        ("checks:\n  - property: layer_norm_growth\n    params: {kind: mpl}\n    expect: {min: 1}\n", "checks[0].params.kind", 3, "must be one of 'attn', 'mlp'; got 'mpl'.", "did you mean 'mlp'?"),
        (CHECK + "    expect: {metric: ration, min: 1}\n", "checks[0].expect.metric", 3, "first_position_norm has no metric 'ration'; its metrics: ratio, norm.", "did you mean 'ratio'?"),
        # layers
        (CHECK + "    layers: intermedate\n    expect: {min: 1}\n", "checks[0].layers", 3, "got 'intermedate'.", "did you mean 'intermediate'?"),
        (CHECK + "    layers: [9, 3]\n    expect: {min: 1}\n", "checks[0].layers", 3, "range end 3 is before its start 9", None),
        (CHECK + "    layers: {frm: 3}\n    expect: {min: 1}\n", "checks[0].layers", 3, "unknown key 'frm' in a layer range", "did you mean 'from'?"),
        (CHECK + "    layers: [1, two, 3]\n    expect: {min: 1}\n", "checks[0].layers", 3, "integer block indices; got 'two'", None),
        # structure
        ("checks: []\n", "checks", 1, "must hold at least 1 item(s); got 0.", None),
        ("name: x\n", "checks", 1, "required key 'checks' is missing.", None),
        ("checks:\n  - expect: {min: 1}\n", "checks[0].property", 2, "required key 'property' is missing.", None),
        ("checks: {property: first_position_norm}\n", "checks", 1, "must be a list", None),
        ("- property: first_position_norm\n", "(top level)", 1, "must be a mapping with keys such as name, inputs and checks; got a list of 1 items.", None),
        ("just words\n", "(top level)", 1, "must be a mapping with keys such as name, inputs and checks; got 'just words'.", None),
        (CHECK + "    expect: {min: 1}\n    expect: {min: 2}\n", "checks[0].expect", 4, "duplicate key 'expect' (first written on line 3)", None),
        ("checks:\n  - {id: a, property: first_position_norm, expect: {min: 1}}\n  - {id: a, property: first_position_norm, expect: {min: 1}}\n", "checks[1].id", 3, "check id 'a' is already used by the check on line 2", None),
        ("checks:\n  - {property: first_position_norm, expect: {min: 1}}\n  - {property: first_position_norm, expect: {min: 1}}\n", "checks[1]", 3, "defaults to the property name 'first_position_norm', already used by the check on line 2", "give each check of the same property its own `id:`"),
    ],
)
def test_each_problem_is_located_with_key_path_and_hint(project, text: str, key_path: str, line: int, fragment: str, hint: str | None) -> None:
    found = problems(project(text))
    matching = [p for p in found if p.key_path == key_path]
    assert matching, f"no problem at {key_path}; got:\n" + "\n".join(map(str, found))
    problem = matching[0]
    assert problem.path == "specs/llama.yaml"
    assert problem.line == line, str(problem)
    assert fragment in problem.message, str(problem)
    assert problem.hint == hint, str(problem)
    assert problem.message.endswith(".")


def test_missing_key_points_at_its_parent(project) -> None:
    problem = only(project("name: x\nchecks:\n  - id: a\n    expect: {min: 1}\n"))
    assert (problem.key_path, problem.line, problem.column) == ("checks[0].property", 3, 5)


def test_every_problem_in_the_file_is_reported_at_once(project) -> None:
    text = """\
inputs: {sequences: 0}
checks:
  - property: first_position_norm
    params: {site: nowhere}
    expect: {min: high}
  - property: no_such_property
    expect: {mn: 1}
"""
    found = problems(project(text))
    assert [(p.line, p.key_path) for p in found] == [
        (1, "inputs.sequences"),
        (4, "checks[0].params.site"),
        (5, "checks[0].expect.min"),
        (6, "checks[1].property"),
        (7, "checks[1].expect.mn"),
    ]


# ---------------------------------------------------------------- YAML-level refusals


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "holds no YAML document"),
        ("# only a comment\n\n", 1, "holds no YAML document"),
        ("checks:\n  - property: [first\n    expect: {min: 1}\n", 3, "is not valid YAML"),
        ("checks:\n  - property: x\n   expect: {min: 1}\n", 3, "is not valid YAML"),
        ("checks:\n\t- property: x\n", 2, "is not valid YAML"),
        ("a: 1\n---\nb: 2\n", 2, "is not valid YAML"),
        ("a: *nowhere\n", 1, "is not valid YAML"),
        ("name: a\x00b\n", 1, "'\\x00' is not allowed"),
        ("name: x\ndescription: !!binary aGk=\n", 2, "YAML tag 'tag:yaml.org,2002:binary' is not allowed"),
        ("name: x\nchecks: !custom [1]\n", 2, "YAML tag '!custom' is not allowed"),
        ("checks: !!set {a, b}\n", 1, "is not allowed"),
        ("checks:\n  - ? [a, b]\n    : c\n", 2, "keys must be plain words"),
    ],
)
def test_yaml_problems_carry_a_line(project, text: str, line: int, fragment: str) -> None:
    problem = only(project(text))
    assert problem.line == line, str(problem)
    assert fragment in problem.message, str(problem)


def test_python_tags_are_refused_and_never_run(project, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    text = f"""\
name: x
checks:
  - property: !!python/object/apply:os.system ["touch {marker}"]
    expect: !!python/object:collections.OrderedDict {{}}
"""
    found = problems(project(text))
    assert [(p.line, p.key_path) for p in found] == [(3, "checks[0].property"), (4, "checks[0].expect")]
    assert "tag:yaml.org,2002:python/object/apply:os.system" in found[0].message
    assert not marker.exists()


def test_billion_laughs_is_refused_unexpanded(project) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    lines.append("checks: *a9")
    path = project("\n".join(lines) + "\n")
    problem = only(path)  # how fast is a benchmark's business (benchmarks/spec_fuzz_campaign.py), not a unit test's
    assert "expands to more than 100,000 values" in problem.message
    assert problem.line >= 1


def test_recursive_alias_is_refused(project) -> None:
    problem = only(project("checks: &loop [*loop]\n"))
    assert "nested more than" in problem.message


def test_deep_nesting_is_refused(project) -> None:
    problem = only(project("checks: " + "[" * 5000 + "]" * 5000 + "\n"))
    assert problem.line == 1


def test_non_utf8_bytes_give_line_and_column(project) -> None:
    problem = only(project(b"name: x\ndescription: caf\xe9\n"))
    assert (problem.line, problem.column) == (2, 17)
    assert "is not UTF-8" in problem.message


def test_oversized_file_is_refused(project) -> None:
    problem = only(project(b"#" * (MAX_SPEC_BYTES + 1)))
    assert "at most" in problem.message


def test_missing_file_is_a_spec_error_with_the_nearest_name(project) -> None:
    with pytest.raises(SpecError, match="no such spec file") as error:
        load_spec(Path("specs/absent.yaml"), REGISTRY)
    assert "builtin:decoder" in str(error.value)  # where shipped specs are, when the project has none
    Path("specs").mkdir(exist_ok=True)
    Path("specs/decoder.yaml").write_text("checks: []\n")
    with pytest.raises(SpecError, match="did you mean specs/decoder.yaml"):
        load_spec(Path("specs/decodr.yaml"), REGISTRY)


# ---------------------------------------------------------------- files a spec refers to


def _text_spec(source: str) -> str:
    return f"inputs: {{mode: text, source: {source!r}}}\nchecks:\n  - property: first_position_norm\n    expect: {{min: 1}}\n"


@pytest.mark.parametrize("source", ["../../etc/passwd", "/etc/passwd", "data/../../outside.txt"])
def test_text_source_outside_the_project_is_refused(project, source: str) -> None:
    problem = only(project(_text_spec(source)))
    assert (problem.key_path, problem.line) == ("inputs.source", 1)
    assert "outside the project root" in problem.message


def test_symlink_out_of_the_project_is_refused(project, tmp_path: Path) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("secret")
    try:
        (tmp_path / "link.txt").symlink_to(outside)
        assert "outside the project root" in only(project(_text_spec("link.txt"))).message
    finally:
        outside.unlink()


def test_check_level_source_is_checked_too(project) -> None:
    text = "checks:\n  - property: first_position_norm\n    inputs: {mode: text, source: ../x.txt}\n    expect: {min: 1}\n"
    problem = only(project(text))
    assert (problem.key_path, problem.line) == ("checks[0].inputs.source", 3)


def test_missing_text_source_is_refused(project) -> None:
    assert "does not exist" in only(project(_text_spec("data/none.txt"))).message


def test_text_source_inside_the_project_resolves_to_an_absolute_path(project) -> None:
    (Path.cwd() / "corpus").mkdir()
    (Path.cwd() / "corpus" / "a.txt").write_text("text")
    spec = load_spec(project(_text_spec("corpus")), REGISTRY)
    assert spec.checks[0].effective_inputs(spec).source == str((Path.cwd() / "corpus").resolve())


def test_dataset_source_is_an_id_not_a_path(project) -> None:
    spec = load_spec(project("inputs: {mode: dataset, source: ../wikitext}\n" + CHECK + "    expect: {min: 1}\n"), REGISTRY)
    assert spec.checks[0].effective_inputs(spec).source == "../wikitext"


# ---------------------------------------------------------------- several files, schema, the real registry


def test_load_specs_reads_folders_sorted_and_reports_all_files(project) -> None:
    project(VALID, "specs/b.yaml")
    project(VALID.replace("name: llama", "name: other"), "specs/a.yml")
    project("not: a spec", "specs/notes.txt")
    assert [spec.name for spec in load_specs(["specs"], REGISTRY)] == ["other", "llama"]
    project("checks: []\n", "specs/c.yaml")
    project("checks: [1\n", "bad/d.yaml")
    with pytest.raises(SpecError) as info:
        load_specs(["specs", "bad/d.yaml"], REGISTRY)
    assert [p.path for p in info.value.problems] == ["specs/c.yaml", "bad/d.yaml"]


def test_json_schema_without_registry_is_generic() -> None:
    schema = json_schema(registry={})
    assert schema["title"] == "geomcheck spec"
    assert set(schema["properties"]) == {"name", "description", "applies_to", "inputs", "gate", "checks"}
    assert schema["required"] == ["checks"]


def test_json_schema_types_params_per_property() -> None:
    schema = json_schema(REGISTRY)
    text = str(schema)
    assert "FirstPositionParams" in text and "GrowthParams" in text
    assert "'discriminator'" in text
    assert "'resid_mid'" in text and "'ratio'" in text


def test_family_names_match_the_adapters() -> None:
    pytest.importorskip("torch")
    from geomcheck.models.adapters import TABLES
    from geomcheck.spec.schema import Family

    assert set(Family.__args__) == {table.family for table in TABLES}


def test_real_registry_loads_a_spec_per_property(tmp_path: Path) -> None:
    try:
        from geomcheck.properties import REGISTRY as real
    except ImportError as exc:
        pytest.skip(f"the property registry does not import yet: {exc}")
    assert real, "the registry is empty"
    for name, prop in real.items():
        assert prop.default_metric in prop.metrics, name
        required = [key for key, field in prop.params.model_fields.items() if field.is_required()]
        if required:
            continue
        spec = parse_spec(f"checks:\n  - property: {name}\n    expect: {{min: 0}}\n", registry=real, root=tmp_path)
        assert spec.checks[0].metric == prop.default_metric
    assert "discriminator" in str(json_schema())
