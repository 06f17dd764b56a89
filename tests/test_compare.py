"""``geomcheck compare``: identical inputs for both checkpoints, exit codes, the summary and the escaped report."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from tiny import save_tiny, word_tokenizer
from transformers import AutoModelForCausalLM

from geomcheck import cli
from geomcheck.compare_run import compare
from geomcheck.gate.compare import summary_table
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import parse_spec

EVIL_REASON = "<script>document.title='pwned-by-reason'</script> & more"
SPEC = """\
name: tiny-compare
description: "compare fixture <b>not bold</b>"
inputs: {{mode: corpus, sequences: 4, tokens: 24, seed: 1}}
checks:
  - id: final_norm_drop
    property: layer_norm_growth
    expect: {{metric: final_norm_drop, max: {bound}}}
    reason: "{reason}"
  - id: first_position
    property: first_position_norm
    expect: {{min: 0.0}}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """(A, B): a tiny LLaMA and the same weights with the final norm scaled 50x, which raises final_norm_drop 50x."""
    root = tmp_path_factory.mktemp("compare-models")
    a = save_tiny(root / "ckpt-a", "llama")
    b = root / "ckpt-b-<img src=x onerror=alert(1)>"
    model = AutoModelForCausalLM.from_pretrained(a)
    with torch.no_grad():
        model.model.norm.weight.mul_(50.0)
    model.save_pretrained(b)
    word_tokenizer().save_pretrained(b)
    return a, b


def _spec_file(tmp_path: Path, bound: float) -> Path:
    path = tmp_path / "tiny-compare.yaml"
    path.write_text(SPEC.format(bound=bound, reason=EVIL_REASON.replace('"', '\\"')))
    return path


def _drops(pair, tmp_path) -> tuple[float, float]:
    spec = parse_spec(_spec_file(tmp_path, 1.0e9).read_text(), tmp_path / "tiny-compare.yaml")
    comparison = compare(GeomSession(), [spec], str(pair[0]), str(pair[1]))
    return comparison.rows[0].values


def test_a_check_passing_on_a_and_failing_on_b_gates_with_exit_1(pair, tmp_path, capsys):
    drop_a, drop_b = _drops(pair, tmp_path)
    assert drop_b > 10 * drop_a
    spec = _spec_file(tmp_path, math.sqrt(drop_a * drop_b))
    report = tmp_path / "out" / "compare.html"
    code = cli.main(["compare", str(pair[0]), str(pair[1]), "--spec", str(spec), "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"final_norm_drop\s.*passed .*failed .*REGRESSED", out)
    assert re.search(r"first_position\s.*passed .*passed .*unchanged", out)
    assert "gate: FAILED, 1 check(s) passed on A and fail on B: final_norm_drop" in out
    assert report.is_file()


def test_the_reverse_direction_is_a_fix_and_exits_0(pair, tmp_path, capsys):
    drop_a, drop_b = _drops(pair, tmp_path)
    spec = _spec_file(tmp_path, math.sqrt(drop_a * drop_b))
    code = cli.main(["compare", str(pair[1]), str(pair[0]), "--spec", str(spec), "--no-report"])
    assert code == 0
    assert re.search(r"final_norm_drop\s.*failed .*passed .*fixed", capsys.readouterr().out)


def test_identical_checkpoints_exit_0_on_identical_tokens(pair, tmp_path, capsys):
    spec_path = _spec_file(tmp_path, 1.0e9)
    spec = parse_spec(spec_path.read_text(), spec_path)
    session = GeomSession()
    comparison = compare(session, [spec], str(pair[0]), str(pair[0]))
    assert comparison.exit_code == 0
    assert all(row.change == "unchanged" and not row.drift and row.delta == 0 for row in comparison.rows)
    assert [item.same_tokens for item in comparison.inputs] == [True]
    assert "gate: passed" in summary_table(comparison)
    code = cli.main(["compare", str(pair[0]), str(pair[0]), "--spec", str(spec_path), "--no-report"])
    assert code == 0


def test_both_models_read_the_same_tokens_and_moves_beyond_tolerance_are_listed(pair, tmp_path):
    spec_path = _spec_file(tmp_path, 1.0e9)
    spec = parse_spec(spec_path.read_text(), spec_path)
    session = GeomSession()
    comparison = compare(session, [spec], str(pair[0]), str(pair[1]))
    captures = session.captures()
    ids = [captures[(str(ref), session.inputs_for(spec, spec.checks[0]))].batch.ids for ref in pair]
    assert (ids[0] == ids[1]).all()
    drop = comparison.rows[0]
    assert drop.change == "unchanged" and drop.drift and "final_norm_drop aggregate" in drop.drift[0]
    assert comparison.exit_code == 0


def test_errors_exit_3(pair, tmp_path, capsys):
    spec = _spec_file(tmp_path, 1.0)
    assert cli.main(["compare", str(pair[0]), str(tmp_path / "missing"), "--spec", str(spec), "--no-report"]) == 3
    assert "no such file or directory" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks: [{property: no_such_property, expect: {min: 1}}]\n")
    assert cli.main(["compare", str(pair[0]), str(pair[1]), "--spec", str(bad), "--no-report"]) == 3


def test_report_is_self_contained_side_by_side_and_escaped(pair, tmp_path):
    drop_a, drop_b = _drops(pair, tmp_path)
    spec = _spec_file(tmp_path, math.sqrt(drop_a * drop_b))
    report = tmp_path / "compare.html"
    assert cli.main(["compare", str(pair[0]), str(pair[1]), "--spec", str(spec), "--report", str(report)]) == 1
    page = report.read_text(encoding="utf-8")
    assert 'data-verdict="failed"' in page
    assert re.search(r'data-check="final_norm_drop" data-change="regressed" data-a="passed" data-b="failed"', page)
    assert re.search(r'data-check="first_position" data-change="unchanged"', page)
    # One inline plotly, one overlaid figure per check with values, no external resources.
    assert page.count('class="geom-figure"') == 2
    assert page.count("<script>") == 2 and "src=\"http" not in page
    # Model paths, the spec's description and the check's reason are text, never markup.
    assert "<img src=x onerror=alert(1)>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "<script>document.title" not in page
    assert "&lt;script&gt;document.title=&#39;pwned-by-reason&#39;&lt;/script&gt;" in page
    scripts = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page, re.DOTALL)
    assert len(scripts) == 4
    assert all("<" not in body and ">" not in body for _, body in scripts)


def test_fail_on_drift_turns_a_move_beyond_noise_into_exit_1(pair, tmp_path, capsys):
    """B's final norm is 50x A's: no check flips (bound 1e9), but the gated value moved far beyond noise."""
    spec = _spec_file(tmp_path, 1.0e9)
    assert cli.main(["compare", str(pair[0]), str(pair[1]), "--spec", str(spec), "--no-report"]) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(pair[0]), str(pair[1]), "--spec", str(spec), "--no-report", "--fail-on-drift"]) == 1
    assert "gate: FAILED (--fail-on-drift), 1 check(s) moved beyond noise and floor: final_norm_drop" in capsys.readouterr().out
    assert cli.main(["compare", str(pair[0]), str(pair[0]), "--spec", str(spec), "--no-report", "--fail-on-drift"]) == 0
    assert "none moved beyond noise and floor" in capsys.readouterr().out


def test_a_block_local_change_is_named_by_the_profile_largest_first(pair, tmp_path):
    """Block 1's MLP output tripled: the aggregates may hold, the per-block norms name block 1 (and what follows)."""
    damaged = tmp_path / "ckpt-block-1"
    model = AutoModelForCausalLM.from_pretrained(pair[0])
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(3.0)
    model.save_pretrained(damaged)
    word_tokenizer().save_pretrained(damaged)
    spec_path = _spec_file(tmp_path, 1.0e9)
    spec = parse_spec(spec_path.read_text(), spec_path)
    comparison = compare(GeomSession(), [spec], str(pair[0]), str(damaged), fail_on_drift=True)
    drop = comparison.rows[0]
    assert drop.moved_blocks and drop.moved_blocks[0].where in ("median_norm block 1", "median_norm block 2")
    assert all(int(row.where.rsplit(" ", 1)[1]) >= 1 for row in drop.moved_blocks)  # block 0 comes before the damage
    assert comparison.exit_code == 1
    table = summary_table(comparison)
    assert "blocks that moved past their floors (paired profile), furthest first:" in table


def test_the_effect_cell_names_the_worst_block_and_says_identical_when_nothing_moved(pair, tmp_path):
    from geomcheck.gate.drift import DriftResult, DriftRow, DriftSettings

    spec_path = _spec_file(tmp_path, 1.0e9)
    spec = parse_spec(spec_path.read_text(), spec_path)
    row = compare(GeomSession(), [spec], str(pair[0]), str(pair[0])).rows[0]
    assert row.effect_text() == "identical"
    rows = (DriftRow("ratio block 12", 1.0, 1.1, 0.1, 0.3, 0.0, False), DriftRow("ratio block 14", 1.0, -1.59, 0.1, 1e-6, 0.0, True))
    moved = dataclasses.replace(row, noise=DriftResult(rows, DriftSettings()))
    assert moved.effect_text() == "-25.9 SE at block 14"
    unknown = dataclasses.replace(row, noise=DriftResult((DriftRow("ratio aggregate", 1.0, 1.5, None, 0.0, 0.0, True),), DriftSettings()))
    assert unknown.effect_text() == "+0.5 (no SE)"
