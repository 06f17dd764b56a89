"""Planted cases for the issue-14 fixes: the helix skips an outlier first row everywhere, first_position_norm says where the largest norms sit."""

from __future__ import annotations

import numpy as np
import pytest

from geomcheck.properties import first_position_norm as fpn
from geomcheck.capture.sites import Point, Site
from geomcheck.properties import positional_helix as helix
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import parse_spec
from tests.property_fixtures import build_activations, first_position_outlier, helix_table, noise, with_table


def outlier_first_row(table: np.ndarray, scale: float = 200.0) -> np.ndarray:
    planted = table.copy()
    planted[0] = scale * np.abs(table).max() * np.ones(table.shape[1])
    return planted


def test_helix_skip_first_applies_to_the_table_as_to_the_means() -> None:
    clean = helix_table(0, 1.5, 0.02)
    acts = with_table(outlier_first_row(clean), seed=0)
    skipped = helix.positional_helix(acts, helix.Params(), (0, 1))
    kept = helix.positional_helix(acts, helix.Params(skip_first=0), (0, 1))
    # With row 0 dropped the table is a clean helix again; kept, the outlier owns PC0 and no sinusoid fits it.
    assert skipped.metric("helix_residual").aggregate < 0.1
    assert kept.metric("helix_residual").aggregate > 0.5
    # The table and the per-block means fit the same rows: the same number of positions per period.
    rows_fitted = len(skipped.details["pcs"])
    assert rows_fitted == clean.shape[0] - 1
    assert skipped.metric("pc0_period").aggregate == rows_fitted / skipped.metric("pc0_cycles").aggregate


def test_helix_max_positions_counts_rows_after_the_skipped_ones() -> None:
    acts = with_table(helix_table(1, 1.5, 0.02), seed=1)
    measured = helix.positional_helix(acts, helix.Params(skip_first=2, max_positions=100), (0,))
    assert len(measured.details["pcs"]) == 100


def test_helix_headline_names_the_table_not_blocks_when_the_value_comes_from_it() -> None:
    acts = with_table(helix_table(2, 1.5, 0.02), seed=2)
    measured = helix.positional_helix(acts, helix.Params(), (0, 1))
    spec = parse_spec("checks:\n  - property: positional_helix\n    expect: {max: 0.3}\n", "specs/gpt2.yaml")
    outcome = evaluate(spec.checks[0], measured, model="tiny")
    assert outcome.passed
    assert "from the position table" in outcome.headline and "blocks" not in outcome.headline


def test_first_position_norm_reports_where_a_moved_outlier_sits() -> None:
    rng = np.random.default_rng(3)
    x = noise(rng, 3, 6, 32, 16)
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    x[:, :, 5] *= 50.0  # the outlier sits at position 5, as with a BOS the model never saw in training
    measured = fpn.first_position_norm(build_activations(x, seed=3), fpn.Params(), (0, 1, 2))
    assert measured.metric("ratio").aggregate < 2
    assert measured.metric("position0_share").aggregate == 0.0
    assert measured.notes == ("largest norm per sequence (3 blocks): position 5 in 100%",)
    spec = parse_spec("checks:\n  - property: first_position_norm\n    expect: {min: 20}\n", "specs/decoder.yaml")
    outcome = evaluate(spec.checks[0], measured, model="tiny")
    assert not outcome.passed
    assert outcome.details[0] == "largest norm per sequence (3 blocks): position 5 in 100%"


def test_first_position_depth_metrics_are_block_over_depth() -> None:
    acts = first_position_outlier(4, 50.0, blocks=5)
    measured = fpn.first_position_norm(acts, fpn.Params(), (1, 2, 3, 4))
    assert measured.metric("onset_layer").aggregate == 1.0
    assert measured.metric("onset_depth").aggregate == 0.25  # block 1 of 5 sits at 1 / 4
    assert measured.metric("last_depth").aggregate == 1.0
    assert measured.metric("position0_share").aggregate == 1.0
    quiet = fpn.first_position_norm(first_position_outlier(4, 1.0, blocks=5), fpn.Params(), (0, 1, 2, 3, 4))
    assert np.isnan(quiet.metric("onset_depth").aggregate) and np.isnan(quiet.metric("last_depth").aggregate)


def test_the_band_is_the_longest_run_above_the_threshold_not_an_isolated_spike() -> None:
    # Block 0 spikes to 30 alone; blocks 3-5 hold the band (Gemma-3's shape, issue 26).
    acts = first_position_outlier(4, 1.0, blocks=7)
    for block, ratio in {0: 30.0, 3: 25.0, 4: 60.0, 5: 40.0}.items():
        acts.sites[Site(block, Point.RESID_POST)].norms[:, 0] *= ratio
    measured = fpn.first_position_norm(acts, fpn.Params(), tuple(range(7)))
    assert (measured.metric("onset_layer").aggregate, measured.metric("last_layer").aggregate) == (3.0, 5.0)
    assert measured.metric("peak_ratio").aggregate == pytest.approx(60.0, rel=0.05)
    assert fpn.longest_run([0, 1, 4, 5], (0, 1, 2, 3, 4, 5)) == [0, 1]  # a tie goes to the earliest run
    assert fpn.longest_run([], (0, 1)) == []
