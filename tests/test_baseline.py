"""Baselines: recording, tolerance edges, CI behaviour and atomic writes."""

import json
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from geomcheck.gate import baseline
from geomcheck.properties.base import Measurement, Metric
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.schema import load_spec

SPEC = """\
name: gate
inputs: {sequences: 3, tokens: 12}
checks:
  - id: ratio
    property: first_position_norm
    expect: {min: 0.0}
    tolerance: {abs: 0.0, rel: 0.01}
"""


def measured(aggregate: float, per_layer: dict[int, float]) -> Measurement:
    metric = Metric("ratio", "test", aggregate, MappingProxyType(per_layer))
    return Measurement("first_position_norm", True, None, tuple(per_layer), {}, MappingProxyType({"ratio": metric}))


def test_tolerance_edges():
    recorded = baseline.snapshot(measured(10.0, {0: 2.0, 1: 4.0}))
    band = baseline.ToleranceBand(abs=0.0, rel=0.1)
    assert baseline.drift(recorded, measured(10.99, {0: 2.0, 1: 4.0}), band) == []
    lines = baseline.drift(recorded, measured(11.01, {0: 2.0, 1: 4.0}), band)
    assert len(lines) == 1 and "ratio aggregate: 11.01 vs baseline 10" in lines[0]
    lines = baseline.drift(recorded, measured(10.0, {0: 2.0, 1: 4.41}), band)
    assert lines and "block 1" in lines[0]
    assert baseline.drift(recorded, measured(10.0, {0: 2.0, 1: 4.0}), baseline.ToleranceBand(0.0, 0.0)) == []


def test_invalid_now_but_valid_then_is_drift():
    recorded = baseline.snapshot(measured(10.0, {0: 2.0}))
    now = replace(measured(10.0, {0: 2.0}), valid=False, reason="NaN at blocks.0.resid_post")
    assert any("validity changed" in line for line in baseline.drift(recorded, now, baseline.ToleranceBand()))


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "m" / "spec.json"
    baseline.write_atomic(path, {"format": 1, "checks": {"a": 1}})
    before = path.read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of writing

    monkeypatch.setattr(baseline.json, "dump", crash)
    with pytest.raises(KeyboardInterrupt):
        baseline.write_atomic(path, {"format": 1, "checks": {"a": 2}})
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["spec.json"], "no temporary file left behind"


def test_corrupt_baseline_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": 1,\n "checks": ')
    with pytest.raises(Exception, match=r"bad\.json:2:.*--geom-update"):
        baseline.read(path)


@pytest.fixture
def spec(tmp_path) -> object:
    (tmp_path / "gate.yaml").write_text(SPEC)
    return load_spec(tmp_path / "gate.yaml")


def run(tiny_model: str, spec, root: Path, *, update=False, ci=False, seed=0):
    from geomcheck.models.loader import LoadOptions

    session = GeomSession(LoadOptions(seed=seed), baselines=BaselineOptions(root=root, update=update, ci=ci))
    result = session.run_check(spec, spec.checks[0], tiny_model)
    return result, session.finish()


def test_round_trip_and_drift_on_a_real_capture(tiny_dirs, spec, tmp_path):
    model, root = str(tiny_dirs["llama"]), tmp_path / "baselines"
    result, written = run(model, spec, root, update=True)
    assert result.outcome.status == "passed" and written == [root / "llama" / "gate.json"]
    data = json.loads(written[0].read_text())
    assert data["checks"]["ratio"]["metrics"]["ratio"]["per_layer"].keys() == {"0", "1", "2"}
    again, written = run(model, spec, root)
    assert again.outcome.status == "passed" and written == [], "a clean re-run raises no alarm"
    other_inputs, _ = run(model, spec, root, seed=5)  # other corpus chunks: the ratios move
    assert other_inputs.outcome.status == "failed" and "drifted from its baseline" in other_inputs.outcome.headline


def test_missing_baseline_fails_in_ci_and_is_created_locally(tiny_dirs, spec, tmp_path):
    model, root = str(tiny_dirs["llama"]), tmp_path / "baselines"
    result, written = run(model, spec, root, ci=True)
    assert result.outcome.status == "failed" and written == []
    assert "no baseline" in result.outcome.headline and "--geom-update" in result.outcome.details[0]
    result, written = run(model, spec, root, ci=False)
    assert result.outcome.status == "passed" and written == [root / "llama" / "gate.json"]
