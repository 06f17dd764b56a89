"""Specs that validate but can never say anything are refused at collection; a zero-width band only warns."""

from __future__ import annotations

import pytest

import geomcheck.pytest_plugin.collect  # noqa: F401  (shared with pytester's in-process runs)
from geomcheck.errors import SpecError
from geomcheck.properties import REGISTRY
from geomcheck.spec.schema import parse_spec


def problems(text: str) -> list:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "specs/dead.yaml")
    return info.value.problems


def check(body: str, top: str = "") -> str:
    return f"{top}checks:\n  - property: first_position_norm\n{body}"


def test_per_layer_on_an_aggregate_only_metric_is_refused_at_on():
    (problem,) = problems(check("    expect: {metric: onset_layer, on: per_layer, min: 1}\n"))
    assert (problem.line, problem.key_path) == (3, "checks[0].expect.on")
    assert "only an aggregate value" in problem.message and "ratio, max_abs_ratio" in problem.hint


def test_per_layer_on_a_per_layer_metric_is_fine():
    parse_spec(check("    expect: {metric: max_abs_ratio, on: per_layer, min: 1}\n"))


@pytest.mark.parametrize("key", ["families", "models"])
def test_empty_applies_to_lists_are_refused(key):
    (problem,) = problems(check("    expect: {min: 1}\n", f"applies_to: {{{key}: []}}\n"))
    assert problem.key_path == f"applies_to.{key}" and "matches no model" in problem.message


def test_zero_width_band_warns_on_a_continuous_metric_but_not_on_a_block_index():
    spec = parse_spec(check("    expect: {between: [2, 2]}\n"), "specs/dead.yaml")
    (warning,) = spec.warnings
    assert warning.startswith("specs/dead.yaml:3:14: checks[0].expect.between: warning: the band [2, 2] has zero width")
    assert parse_spec(check("    expect: {min: 2, max: 2}\n")).warnings[0].split(": ")[1] == "checks[0].expect.max"
    assert parse_spec(check("    expect: {metric: onset_layer, between: [11, 11]}\n")).warnings == ()


@pytest.mark.parametrize("layers", ["[0, 5000]", "{blocks: [1, -2000]}", "{from: 3, to: 1024}"])
def test_layer_indices_no_model_resolves_are_refused(layers):
    (problem,) = problems(check(f"    layers: {layers}\n    expect: {{min: 1}}\n"))
    assert problem.key_path == "checks[0].layers" and "which no model resolves" in problem.message


@pytest.mark.parametrize("inputs", ["{mode: single_token}", "{mode: single_token, bos: false}", "{tokens: 1, bos: false}"])
def test_single_position_inputs_for_a_position_property_are_refused(inputs):
    (problem,) = problems(check(f"    inputs: {inputs}\n    expect: {{min: 1}}\n"))
    assert problem.key_path == "checks[0].inputs" and "sequences of one position" in problem.message


def test_single_position_inputs_inherited_from_the_spec_are_refused_where_written():
    (problem,) = problems(check("    expect: {min: 1}\n", "inputs: {mode: single_token}\n"))
    assert (problem.line, problem.key_path) == (1, "inputs")


@pytest.mark.parametrize("inputs", ["{mode: single_token, bos: true}", "{tokens: 1}", "{mode: repeated_token}"])
def test_inputs_with_more_than_one_position_pass(inputs):
    parse_spec(check(f"    inputs: {inputs}\n    expect: {{min: 1}}\n"))


def test_single_token_inputs_are_fine_for_a_property_that_does_not_compare_positions():
    parse_spec("checks:\n  - property: layer_norm_growth\n    params: {skip_first: 0}\n    inputs: {mode: single_token}\n    expect: {min: 1}\n")


@pytest.mark.parametrize(
    "params, message",
    [
        ("{threshold: '8'}", "must be a number in (1, 1000000]; got '8'"),
        ("{point: 1}", "must be one of"),
    ],
)
def test_params_are_strict(params, message):
    (problem,) = problems(check(f"    params: {params}\n    expect: {{min: 1}}\n"))
    assert message in problem.message


def test_strict_params_still_take_an_integer_for_a_float_and_an_enum_by_name():
    spec = parse_spec(check("    params: {threshold: 8, point: attn_out}\n    expect: {min: 1}\n"))
    assert spec.checks[0].params.threshold == 8.0
    (problem,) = problems("checks:\n  - property: attn_mlp_separation\n    params: {folds: 4.0}\n    expect: {min: 0}\n")
    assert problem.message == "must be an integer in [2, 10]; got 4.0."


def test_per_layer_and_positional_declarations_match_what_each_property_returns(tiny_dirs):
    """The declarations that refuse specs must agree with the measurements: measured on a tiny model."""
    from geomcheck.capture.hooks import capture
    from geomcheck.capture.inputs import InputSpec, build_batch
    from geomcheck.models.loader import load

    for family in ("gpt2", "llama"):
        loaded = load(str(tiny_dirs[family]))
        for mode in ("corpus", "repeated_token"):
            batch = build_batch(InputSpec(mode=mode, sequences=6, tokens=24), loaded.tokenizer, bos_token_id=1,
                                default_bos=True, vocab_size=512)
            acts = capture(loaded, batch)
            for prop in REGISTRY.values():
                if prop.applies(acts):
                    continue
                found = prop.measure(acts, prop.params.model_validate({"folds": 2} if "folds" in prop.params.model_fields else {}),
                                     tuple(range(loaded.n_blocks)))
                assert found.valid, (prop.name, found.reason)
                with_layers = {name for name, metric in found.metrics.items() if len(metric.per_layer)}
                assert with_layers == set(prop.per_layer_metrics), prop.name
                assert set(prop.positional_metrics) <= set(prop.metrics)


def test_the_plugin_shows_spec_warnings(pytester, tiny_dirs, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    pytester.makefile(".yaml", **{"specs/w": "inputs: {sequences: 2, tokens: 8}\n" + check("    expect: {between: [0, 0]}\n")})
    result = pytester.runpytest(f"--geom-model={tiny_dirs['gpt2']}", "--geom-report", "none", "--collect-only")
    result.stdout.fnmatch_lines(["*SpecWarning*specs/w.yaml:4:14: checks[[]0[]].expect.between: warning: the band [[]0, 0[]] has zero width*"])
