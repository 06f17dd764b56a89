"""A baseline edit must never silence the gate (hostile-inputs issue, item 3).

A pull request can edit the committed baseline as easily as the model. Each edit below used to turn
the drift test off with exit 0 under CI=true while the run still said "baseline compared"; now each is
an error naming the file and the check, and the summary says how many values were tested.
"""

from __future__ import annotations

import json

import pytest

from geomcheck.gate import baseline
from geomcheck.gate.codec import BaselineError
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.schema import load_spec

SPEC = """\
name: gate
inputs: {sequences: 8, tokens: 12}
checks:
  - id: ratio
    property: first_position_norm
    expect: {min: 0.0}
  - id: per_block
    property: first_position_norm
    expect: {on: per_layer, min: 0.0}
"""

EDITS = {
    "gated deleted": lambda entry: entry.pop("gated"),
    "values emptied": lambda entry: entry["gated"].update(values={}),
    "values a list": lambda entry: entry["gated"].update(values=[1]),
    "entry reduced to valid": lambda entry: [entry.pop(k) for k in list(entry) if k != "valid"],
    "a value made a string": lambda entry: next(iter(entry["gated"]["values"].values())).update(value="0.5"),
    "a value made astronomically large": lambda entry: next(iter(entry["gated"]["values"].values())).update(value=1e308),
    "a value made an object": lambda entry: entry["gated"]["values"].update({next(iter(entry["gated"]["values"])): 3}),
    # The paired profile test reads every block's recorded value of the profile metrics (gate.profile).
    "profile values deleted": lambda entry: entry["metrics"]["ratio"].pop("per_layer"),
    "profile values emptied": lambda entry: entry["metrics"]["ratio"].update(per_layer={}),
    "profile block made a word": lambda entry: entry["metrics"]["ratio"]["per_layer"].update(one={"value": 1.0}),
    "profile value made a string": lambda entry: entry["metrics"]["ratio"]["per_layer"]["0"].update(value="1"),
}


@pytest.fixture
def recorded(tiny_dirs, tmp_path):
    (tmp_path / "gate.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "gate.yaml")
    root = tmp_path / "baselines"
    session = GeomSession(baselines=BaselineOptions(root=root, update=True, ci=False))
    for check in spec.checks:
        assert session.run_check(spec, check, str(tiny_dirs["llama"])).outcome.status == "passed"
    (path,) = session.finish()
    return spec, root, path


def judged(spec, root, model: str):
    session = GeomSession(baselines=BaselineOptions(root=root, ci=True))
    outcomes = {check.id: session.run_check(spec, check, model).outcome for check in spec.checks}
    return outcomes, session.baseline_summary()


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_entry_is_an_error_not_a_silent_pass(recorded, tiny_dirs, edit):
    spec, root, path = recorded
    data = json.loads(path.read_text())
    EDITS[edit](data["checks"]["ratio"])
    path.write_text(json.dumps(data))
    outcomes, _ = judged(spec, root, str(tiny_dirs["llama"]))
    assert outcomes["ratio"].status == "error", (edit, outcomes["ratio"].headline)
    assert str(path) in outcomes["ratio"].headline and "'ratio'" in outcomes["ratio"].headline
    assert outcomes["per_block"].status == "passed"  # the untouched entry is still judged


def test_an_entry_gating_fewer_blocks_than_the_check_names_the_missing_ones(recorded, tiny_dirs):
    spec, root, path = recorded
    data = json.loads(path.read_text())
    values = data["checks"]["per_block"]["gated"]["values"]
    dropped = sorted(values)[-1]
    del values[dropped]
    path.write_text(json.dumps(data))
    outcomes, _ = judged(spec, root, str(tiny_dirs["llama"]))
    assert outcomes["per_block"].status == "error"
    assert dropped in outcomes["per_block"].headline and "Re-record" in outcomes["per_block"].headline


def test_duplicate_keys_are_refused_with_the_file(recorded):
    _, _, path = recorded
    text = path.read_text()
    path.write_text(text.replace('"format": 2,', '"format": 2, "format": 2,', 1))
    with pytest.raises(BaselineError, match="appears twice"):
        baseline.read(path)


def test_the_summary_says_how_many_values_were_tested(recorded, tiny_dirs):
    spec, root, path = recorded
    outcomes, summary = judged(spec, root, str(tiny_dirs["llama"]))
    assert all(o.status == "passed" for o in outcomes.values())
    (line,) = [line for line in summary if line.startswith("baseline compared")]
    blocks = 3  # the tiny LLaMA: one aggregate plus one value per block
    # Both checks measure the same per-block ratios (ratio, max_abs_ratio: the property's profile metrics),
    # and each holds every block of them to its floor.
    assert line.endswith(f"({1 + blocks} gated values tested, {2 * 2 * blocks} block values held to their floors (paired profile))"), line
    assert str(path) in line
