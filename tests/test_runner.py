"""GeomSession: captures shared between checks, and a check that cannot be evaluated."""

from geomcheck.runner import GeomSession
from geomcheck.spec.schema import load_spec

SPEC = """\
inputs: {sequences: 2, tokens: 8}
checks:
  - id: in_range
    property: first_position_norm
    expect: {min: 0.0}
  - id: out_of_range
    property: first_position_norm
    layers: [0, 40]
    expect: {min: 0.0}
  - id: repeated
    property: repeated_token_convergence
    inputs: {mode: repeated_token, sequences: 2, tokens: 8}
    expect: {min: -1.0}
"""


def test_layers_beyond_the_model_are_an_error_outcome_not_a_crash(tiny_dirs, tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "s.yaml")
    session = GeomSession()
    results = {check.id: session.run_check(spec, check, str(tiny_dirs["llama"])) for check in spec.checks}
    assert results["in_range"].outcome.status == "passed"
    bad = results["out_of_range"].outcome
    assert bad.status == "error" and "layers" in bad.headline and "3" in bad.headline


def test_one_capture_per_model_and_input_set(tiny_dirs, tmp_path):
    (tmp_path / "s.yaml").write_text(SPEC)
    spec = load_spec(tmp_path / "s.yaml")
    session = GeomSession()
    for check in spec.checks:
        session.run_check(spec, check, str(tiny_dirs["llama"]))
    modes = sorted(key[1].mode for key in session.captures())
    assert modes == ["corpus", "repeated_token"]


def test_a_measurement_shared_across_specs_carries_errors_for_every_check_that_reads_it(tiny_dirs, tmp_path):
    """Two specs read different metrics of one measurement (same property, layers, inputs): each check's
    metric gets its own standard error, whichever spec ran first."""
    growth = "name: {name}\ninputs: {{sequences: 16, tokens: 8}}\nchecks:\n  - {{id: c, property: layer_norm_growth, expect: {{metric: {metric}, min: 0.0}}}}\n"
    (tmp_path / "a.yaml").write_text(growth.format(name="a", metric="late_growth"))
    (tmp_path / "b.yaml").write_text(growth.format(name="b", metric="last_block_spike"))
    first, second = load_spec(tmp_path / "a.yaml"), load_spec(tmp_path / "b.yaml")
    session = GeomSession()
    ref = str(tiny_dirs["llama"])
    a = session.run_check(first, first.checks[0], ref).measurement
    b = session.run_check(second, second.checks[0], ref).measurement
    # Every replicate measures last_block_spike along with late_growth, so its error comes free.
    assert a.metrics["late_growth"].se is not None and a.metrics["last_block_spike"].se is not None
    assert b.metrics["late_growth"].se is not None and b.metrics["last_block_spike"].se is not None
    assert b.metrics["last_block_spike"].aggregate == a.metrics["last_block_spike"].aggregate
    assert b.metrics["late_growth"].se == a.metrics["late_growth"].se  # kept, not re-estimated
    assert len(session.captures()) == 1


def test_a_metric_the_replicates_skipped_gets_its_own_replicates_when_a_later_check_reads_it(tiny_dirs, tmp_path, monkeypatch):
    """The probe's replicates skip the silhouette (not asked for, costly); a later check on it adds them."""
    from geomcheck import runner

    separation = ("name: {name}\ninputs: {{sequences: 16, tokens: 8}}\nchecks:\n  - {{id: c, property: attn_mlp_separation, "
                  "params: {{skip_first: 0, max_points: 200}}, expect: {{metric: {metric}, min: -1.0}}}}\n")
    (tmp_path / "a.yaml").write_text(separation.format(name="a", metric="probe_pca_accuracy"))
    (tmp_path / "b.yaml").write_text(separation.format(name="b", metric="silhouette"))
    first, second = load_spec(tmp_path / "a.yaml"), load_spec(tmp_path / "b.yaml")
    asked = []
    original = runner.with_uncertainty
    monkeypatch.setattr(runner, "with_uncertainty", lambda *args: asked.append(args[-1].metrics) or original(*args))
    session = GeomSession()
    ref = str(tiny_dirs["llama"])
    a = session.run_check(first, first.checks[0], ref).measurement
    assert a.metrics["probe_pca_accuracy"].se is not None and a.metrics["fisher_ratio"].se is not None  # the Fisher ratio came free
    assert a.metrics["silhouette"].se is None and a.metrics["probe_accuracy"].se is None  # skipped in the replicates
    b = session.run_check(second, second.checks[0], ref).measurement
    assert b.metrics["silhouette"].se is not None
    assert b.metrics["probe_pca_accuracy"].se == a.metrics["probe_pca_accuracy"].se
    assert asked == [frozenset({"probe_pca_accuracy"}), frozenset({"silhouette"})]


def test_a_later_per_block_check_gets_per_block_errors_for_every_metric_the_measurement_covers(tiny_dirs, tmp_path):
    first = "name: a\ninputs: {sequences: 16, tokens: 8}\nchecks:\n  - {id: c, property: first_position_norm, expect: {metric: max_abs_ratio, min: 0.0}}\n"
    second = "name: b\ninputs: {sequences: 16, tokens: 8}\nchecks:\n  - {id: c, property: first_position_norm, expect: {on: per_layer, min: 0.0}}\n"
    (tmp_path / "a.yaml").write_text(first)
    (tmp_path / "b.yaml").write_text(second)
    a_spec, b_spec = load_spec(tmp_path / "a.yaml"), load_spec(tmp_path / "b.yaml")
    session = GeomSession()
    ref = str(tiny_dirs["llama"])
    a = session.run_check(a_spec, a_spec.checks[0], ref).measurement
    assert a.metrics["max_abs_ratio"].se is not None and not a.metrics["max_abs_ratio"].per_layer_se
    b = session.run_check(b_spec, b_spec.checks[0], ref).measurement
    assert b.metrics["ratio"].per_layer_se and b.metrics["max_abs_ratio"].per_layer_se


PLANNED = """\
inputs: {sequences: 4, tokens: 16}
checks:
  - property: first_position_norm
    expect: {min: 0.0}
  - property: attn_mlp_separation
    expect: {min: 0.0}
"""
LATER = """\
inputs: {sequences: 4, tokens: 16}
checks:
  - property: sequence_structure
    expect: {min: -1.0}
"""


def _kept(session, point: str):
    (record,) = session.captures().values()
    stats = [s for site, s in record.activations.sites.items() if site.name.endswith(point)]
    return any(s.samples is not None for s in stats), any(s.position_sum is not None for s in stats)


def test_a_planned_capture_keeps_only_what_the_planned_properties_read(tiny_dirs, tmp_path):
    from geomcheck.properties import REGISTRY
    from geomcheck.runner import capture_plan

    plain = capture_plan([REGISTRY["first_position_norm"], REGISTRY["layer_norm_growth"]], seed=0)
    assert plain.sampled == () and plain.position_means == ()
    assert capture_plan([REGISTRY["attn_mlp_separation"]], seed=0).sampled == ("blocks.*.attn_out", "blocks.*.mlp_out")
    (tmp_path / "s.yaml").write_text(PLANNED)
    spec = load_spec(tmp_path / "s.yaml")
    session = GeomSession()
    session.plan((spec, check) for check in spec.checks)
    for check in spec.checks:
        assert session.run_check(spec, check, str(tiny_dirs["llama"])).outcome.status == "passed"
    assert _kept(session, "attn_out") == (True, False)
    assert _kept(session, "resid_post") == (False, False)  # no position sums: most of a GPU capture's transfers


def test_a_check_outside_the_plan_that_reads_more_gets_a_fuller_capture(tiny_dirs, tmp_path):
    (tmp_path / "s.yaml").write_text(PLANNED)
    (tmp_path / "later.yaml").write_text(LATER)
    spec, later = load_spec(tmp_path / "s.yaml"), load_spec(tmp_path / "later.yaml")
    session = GeomSession()
    session.plan((spec, check) for check in spec.checks)
    session.run_check(spec, spec.checks[0], str(tiny_dirs["llama"]))
    result = session.run_check(later, later.checks[0], str(tiny_dirs["llama"]))
    assert result.measurement is not None and result.measurement.valid, result.measurement
    assert _kept(session, "resid_post") == (True, True)
    assert _kept(session, "attn_out") == (True, False)  # what the earlier plan served is still served


def test_without_a_plan_a_capture_serves_every_property(tiny_dirs, tmp_path):
    (tmp_path / "later.yaml").write_text(LATER)
    later = load_spec(tmp_path / "later.yaml")
    session = GeomSession()
    session.run_check(later, later.checks[0], str(tiny_dirs["llama"]))
    assert _kept(session, "attn_out") == (True, False) and _kept(session, "resid_post") == (True, True)


def test_running_out_of_device_memory_is_one_line_naming_the_options_that_help(tiny_dirs, tmp_path, monkeypatch, capsys):
    import torch

    from geomcheck import runner
    from geomcheck.cli import main

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(runner, "capture", exhausted)
    (tmp_path / "s.yaml").write_text(PLANNED)
    code = main(["run", f"--model={tiny_dirs['llama']}", f"--spec={tmp_path / 's.yaml'}", "--no-report", "--no-baseline", "--batch-size", "4"])
    err = capsys.readouterr().err
    assert code == 3
    (line,) = [line for line in err.splitlines() if "out of memory" in line]
    assert "4 sequences x" in line and "4 per forward pass" in line
    assert "--batch-size 2" in line and "--geom-batch-size=2" in line and "bfloat16" in line and "--device auto" in line


def test_the_batch_size_reaches_the_capture(tiny_dirs, tmp_path, monkeypatch):
    from geomcheck import runner

    seen = []
    original = runner.capture
    monkeypatch.setattr(runner, "capture", lambda loaded, batch, plan: seen.append(plan.batch_size) or original(loaded, batch, plan))
    (tmp_path / "s.yaml").write_text(PLANNED)
    spec = load_spec(tmp_path / "s.yaml")
    GeomSession(batch_size=3).run_check(spec, spec.checks[0], str(tiny_dirs["llama"]))
    assert seen == [3]
