"""The geomcheck command line: listing, capture summary, schema and error handling."""

import json

import pytest

from geomcheck.cli import main


def test_models_lists_aliases_with_availability(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "openai-community/gpt2" in out and "random:" in out


def test_sites_with_glob(capsys, tiny_dirs):
    assert main(["sites", "--model", str(tiny_dirs["gpt2"]), "--select", "blocks.*.attn_out"]) == 0
    assert capsys.readouterr().out.split() == ["blocks.0.attn_out", "blocks.1.attn_out", "blocks.2.attn_out"]
    assert main(["sites", "--model", str(tiny_dirs["gpt2"])]) == 0
    lines = capsys.readouterr().out.split()
    assert lines[:2] == ["embed", "pos_embed"] and lines[-1] == "final_norm" and len(lines) == 3 * 6 + 3


def test_capture_summary_reports_verification(capsys, tiny_dirs):
    assert main(["capture", "--model", str(tiny_dirs["llama"]), "--sequences", "3", "--tokens", "16", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verified_blocks"] == 3 and summary["worst_relative_rms_error"] < 1e-5
    assert summary["bos"] is False, "the default follows the tokenizer, and the tiny word-level one adds no BOS"
    assert [row["site"] for row in summary["rows"]][:2] == ["embed", "blocks.0.resid_post"]


def test_schema_is_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "checks" in json.dumps(schema) and schema.get("type") == "object"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sites", "--model", "no-such-alias"], "not a known alias"),
        (["capture", "--model", "./missing/dir"], "no such file or directory"),
        (["capture", "--model", "smollm2-135m", "--sequences", "100000", "--tokens", "4096"], "over the budget"),
        (["sites", "--model", "x", "--select", "blocks.*.nothing"], "cannot load model"),
    ],
)
def test_errors_are_one_line_without_traceback(capsys, argv, message):
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_pattern_matching_nothing(capsys, tiny_dirs):
    assert main(["sites", "--model", str(tiny_dirs["llama"]), "--select", "blocks.*.nothing"]) == 3
    assert "matches no site" in capsys.readouterr().err


@pytest.mark.real_model
def test_sites_of_the_packaged_model(capsys, smollm2):
    assert main(["sites", "--model", "smollm2-135m"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(lines) == 30 * 6 + 2 and lines[0] == "embed" and lines[-1] == "final_norm"
