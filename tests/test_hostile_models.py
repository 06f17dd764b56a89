"""Broken and hostile checkpoints: one line naming the file and what to do, never a traceback; one error per model."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest

import geomcheck.pytest_plugin.collect  # noqa: F401  (shared with pytester's in-process runs)
from geomcheck.cli import main
from geomcheck.errors import ModelLoadError
from geomcheck.models.loader import LoadOptions, load, preflight


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _corrupt(weights: bytes) -> dict[str, bytes]:
    bad_json = bytearray(weights)
    bad_json[8:20] = b"x" * 12
    return {
        "truncated": weights[: len(weights) // 2],
        "header_only": weights[:4],
        "garbage": bytes(range(256)) * 4,
        "empty": b"",
        "bad_header_json": bytes(bad_json),
    }


@pytest.fixture(scope="module")
def broken(tiny_dirs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken-models")
    good = tiny_dirs["llama"]
    made = {}
    for name, data in _corrupt((good / "model.safetensors").read_bytes()).items():
        made[name] = _copy(good, root / name)
        (made[name] / "model.safetensors").write_bytes(data)
    for name, edit in (("unknown_type", lambda c: c.update(model_type="frobnicator")), ("no_type", lambda c: c.pop("model_type"))):
        made[name] = _copy(good, root / name)
        config = json.loads((made[name] / "config.json").read_text())
        edit(config)
        config.pop("architectures", None)
        (made[name] / "config.json").write_text(json.dumps(config))
    made["pickle"] = _copy(good, root / "pickle")
    (made["pickle"] / "model.safetensors").unlink()
    with open(made["pickle"] / "pytorch_model.bin", "wb") as stream:
        pickle.dump({"x": _Payload(root / "PWNED")}, stream, protocol=2)  # torch's own default: no protocol warning
    return made


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


CORRUPT = ["truncated", "header_only", "garbage", "empty", "bad_header_json"]


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_safetensors_is_one_line_naming_the_file(broken, name):
    for step in (preflight, load):  # was SafetensorError from deep inside transformers
        with pytest.raises(ModelLoadError) as info:
            step(str(broken[name]))
        text = str(info.value)
        assert f"{broken[name] / 'model.safetensors'} is truncated or corrupt" in text and "Remedy:" in text
        assert "\n" not in text


@pytest.mark.parametrize("name, problem", [("unknown_type", "names model_type 'frobnicator'"), ("no_type", "has no model_type")])
def test_unusable_model_type_names_config_json(broken, name, problem):
    for step in (preflight, load):  # was ValueError from AutoConfig
        with pytest.raises(ModelLoadError) as info:
            step(str(broken[name]))
        assert f"{broken[name] / 'config.json'} {problem}" in str(info.value) and "\n" not in str(info.value)


def test_a_malicious_pickle_is_refused_without_suggesting_weights_only_false(broken, capsys):
    with pytest.raises(ModelLoadError) as info:
        load(str(broken["pickle"]), LoadOptions(allow_pickle=True))
    text = str(info.value)
    assert "pytorch_model.bin" in text and "could run code" in text and "weights_only" not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__  # torch's advice is not chained in
    assert not (broken["pickle"].parent / "PWNED").exists()
    assert main(["sites", "--model", str(broken["pickle"]), "--allow-pickle"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weights_only" not in err and "Traceback" not in err


@pytest.mark.parametrize("name", [*CORRUPT, "unknown_type", "no_type"])
def test_the_cli_exits_3_with_one_line(broken, capsys, name):
    assert main(["sites", "--model", str(broken[name])]) == 3
    err = capsys.readouterr().err
    assert err.startswith("geomcheck: error: cannot load model") and err.count("\n") == 1


SPEC = """\
inputs: {sequences: 2, tokens: 8}
checks:
  - {id: a, property: first_position_norm, expect: {min: 0}}
  - {id: b, property: first_position_norm, expect: {metric: max_abs_ratio, min: 0}}
  - {id: c, property: layer_norm_growth, expect: {min: 0}}
"""


@pytest.fixture
def two_specs(pytester, monkeypatch, tmp_path):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    pytester.makefile(".yaml", **{"specs/one": SPEC, "specs/two": SPEC})
    return pytester


def test_an_offline_hub_model_is_one_collection_error_not_one_failure_per_check(two_specs):
    result = two_specs.runpytest("--geom-model=gpt2", "--geom-report", "none")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # 2: errors during collection
    assert out.count("is not in the local Hugging Face cache") == 1, out  # was 6 failures with the same text
    result.assert_outcomes(errors=1)
    assert "Traceback" not in out


def test_a_corrupt_model_beside_a_good_one_is_one_collection_error(two_specs, broken, tiny_dirs):
    result = two_specs.runpytest(f"--geom-model={broken['truncated']}", f"--geom-model={tiny_dirs['gpt2']}", "--geom-report", "none")
    assert result.stdout.str().count("is truncated or corrupt") == 1
    result.assert_outcomes(errors=1)


def test_weights_that_fail_only_when_loaded_are_one_setup_error_and_skips(two_specs, broken, tiny_dirs):
    result = two_specs.runpytest(f"--geom-model={broken['pickle']}", "--geom-allow-pickle", f"--geom-model={tiny_dirs['gpt2']}",
                                 "--geom-report", "none", "-rs")
    result.assert_outcomes(errors=1, skipped=5, passed=6)
    out = result.stdout.str()
    assert out.count("could run code") == 1 and "weights_only" not in out
    result.stdout.fnmatch_lines(["*could not be loaded; see the error at specs/one.yaml::a[[]pickle[]]*"])


def test_a_user_table_naming_the_token_embedding_as_positions_is_refused(tiny_dirs):
    """pos_embed is not on the residual path the check rebuilds; the probe must see it look up positions."""
    import dataclasses

    from geomcheck.models.adapters.probe import probe
    from geomcheck.models.loader import load

    lm = load(str(tiny_dirs["gpt2"]))
    assert probe(lm.model, lm.table).ok
    relabelled = dataclasses.replace(lm.table, pos_embed=lm.table.embed)
    result = probe(lm.model, relabelled)
    assert not result.ok and "not positions" in result.failure and "'wte'" in result.failure


@pytest.mark.parametrize(("swap", "early"), [(("attn", "mlp"), "norm_mlp"), (("norm_attn", "norm_mlp"), "attn")])
def test_a_user_table_that_swaps_sites_is_refused_though_the_residual_adds_up(tiny_dirs, swap, early):
    """x + a + m adds up whichever module is called attn (and norms are off the residual path): a sequential
    block must also run norm_attn -> attn -> norm_mlp -> mlp in that order (issue 22, item 5)."""
    import dataclasses

    from geomcheck.models.adapters.probe import probe
    from geomcheck.models.loader import load

    lm = load(str(tiny_dirs["llama"]))
    first, second = swap
    swapped = dataclasses.replace(lm.table, **{first: getattr(lm.table, second), second: getattr(lm.table, first)})
    assert probe(lm.model, lm.table).ok
    result = probe(lm.model, swapped)
    assert not result.ok and f"the module named {early}" in result.failure and "are they swapped?" in result.failure


@pytest.mark.parametrize(("field", "value", "message"), [
    ("num_hidden_layers", 100_000, "num_hidden_layers is 100000; it must be a whole number in [1, 1,024]"),
    ("num_hidden_layers", 1e9, "num_hidden_layers is 1000000000.0"),
    ("hidden_size", 1e6, "hidden_size is 1000000.0"),
    ("hidden_size", None, "hidden_size is null"),
    ("vocab_size", 4_000_000, "GiB of weights, more than the"),
])
@pytest.mark.parametrize("random_twin", [False, True])
def test_config_sizes_are_bounded_before_anything_is_built(tiny_dirs, tmp_path, field, value, message, random_twin):
    """A committed config.json with 100,000 layers used to hang the run; 1e6 width ended in MemoryError after 75 s."""
    from geomcheck.errors import ModelLoadError
    from geomcheck.models.loader import load, preflight

    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["llama"], folder)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    if field == "vocab_size":
        config.update(hidden_size=65_536, num_attention_heads=64)
    (folder / "config.json").write_text(json.dumps(config))
    ref = ("random:" if random_twin else "") + str(folder)
    for step in (preflight, load):
        with pytest.raises(ModelLoadError, match=re.escape(message) if "GiB" not in message else message) as error:
            step(ref)
        assert str(folder / "config.json") in str(error.value)


def test_a_config_json_nested_without_end_is_refused_unread(tiny_dirs, tmp_path):
    from geomcheck.errors import ModelLoadError
    from geomcheck.models.loader import load

    folder = tmp_path / "model"
    shutil.copytree(tiny_dirs["llama"], folder)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        load(str(folder))
