"""``--device auto``: accelerate places the model (device_map="auto"); capture feeds the embedding's device."""

from __future__ import annotations

import pytest
import torch

from geomcheck.capture.hooks import CapturePlan, capture
from geomcheck.capture.inputs import InputSpec, build_batch
from geomcheck.models.loader import LoadOptions, load
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import parse_spec

SPEC = """\
name: tiny-device
inputs: {mode: corpus, sequences: 4, tokens: 24}
checks:
  - id: growth
    property: layer_norm_growth
    expect: {min: 0.0}
"""


def _capture(loaded):
    batch = build_batch(InputSpec(mode="corpus", sequences=4, tokens=24), loaded.tokenizer, bos_token_id=loaded.bos_token_id,
                        default_bos=loaded.default_bos, vocab_size=int(loaded.model.config.vocab_size))
    return capture(loaded, batch, CapturePlan(samples=32, batch_size=2, progress=False))


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("random_init", [False, True], ids=["weights", "random-twin"])
def test_auto_device_loads_with_a_device_map_and_captures_verified(tiny_dirs, family, random_init):
    ref = ("random:" if random_init else "") + str(tiny_dirs[family])
    loaded = load(ref, LoadOptions(device="auto"))
    device_map = getattr(loaded.model, "hf_device_map", None)
    assert device_map, "device_map='auto' should leave model.hf_device_map set"
    expected = {"cpu"} if not torch.cuda.is_available() else None
    if expected is not None:
        assert {str(device) for device in device_map.values()} == expected
        assert loaded.input_device == torch.device("cpu")
    assert any(note.startswith("device_map auto:") for note in loaded.notes)
    acts = _capture(loaded)
    assert len(acts.verification) == loaded.n_blocks
    assert max(v.rms_error for v in acts.verification) < 1e-5


def test_auto_device_matches_plain_cpu_load(tiny_dirs):
    plain, auto = (_capture(load(str(tiny_dirs["llama"]), LoadOptions(device=device))) for device in ("cpu", "auto"))
    for site, stats in plain.sites.items():
        assert stats.norms == pytest.approx(auto.sites[site].norms, rel=1e-5, abs=1e-6)


def test_session_runs_checks_on_an_auto_placed_model(tiny_dirs, tmp_path):
    spec = parse_spec(SPEC, tmp_path / "tiny-device.yaml")
    session = GeomSession(LoadOptions(device="auto"))
    result = session.run_check(spec, spec.checks[0], str(tiny_dirs["llama"]))
    assert result.outcome.status == "passed", result.outcome.headline


def test_the_gpu_session_s_whole_run_benchmark_runs_on_a_tiny_shape(tmp_path):
    """benchmarks/gpu_run.py is what a lent GPU runs once; it must work before a device is lent."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "run.json"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "gpu_run.py"), "--shapes", "tiny", "--device", "cpu", "--dtype", "float32",
                           "--sequences", "8", "--tokens", "32", "--json", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = json.loads(out.read_text())
    assert row["shape"] == "tiny" and row["checks"] > 0 and row["floor_s"] > 0
    assert {"capture (forward + hooks)", "report"} <= set(row["stages"]) and any(k.startswith("measure:") for k in row["stages"])
