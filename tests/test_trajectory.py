"""``geomcheck trajectory`` over tiny saved checkpoints, and the Trainer callback on a few training steps."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from browser_check import band_contradictions, find_chromium, open_report
from tiny import save_tiny, word_tokenizer
from transformers import AutoModelForCausalLM, LlamaForCausalLM, Trainer, TrainingArguments, default_data_collator

from geomcheck import cli
from geomcheck.integrations.transformers import GeomCheckCallback
from geomcheck.trajectory import discover

SPEC = """\
name: tiny-trajectory
inputs: {mode: corpus, sequences: 8, tokens: 16, seed: 1}
checks:
  - id: final_norm_drop
    property: layer_norm_growth
    expect: {metric: final_norm_drop, max: 300}
  - id: first_position
    property: first_position_norm
    expect: {on: per_layer, min: 0.0}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A Trainer-style output folder: checkpoint-5, -10, -15 and -20; the last has its final norm scaled 50x (a planted
    regression of final_norm_drop); checkpoint-10's trainer_state.json says step 10 although its folder says 99."""
    root = tmp_path_factory.mktemp("trajectory") / "out"
    for step in (15, 5, 20):
        save_tiny(root / f"checkpoint-{step}", "llama", seed=0)
    odd = save_tiny(root / "checkpoint-99", "llama", seed=0)
    (odd / "trainer_state.json").write_text(json.dumps({"global_step": 10}))
    last = root / "checkpoint-20"
    model = AutoModelForCausalLM.from_pretrained(last)
    with torch.no_grad():
        model.model.norm.weight.mul_(50.0)
    model.save_pretrained(last)
    return root


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trajectory-spec") / "tiny-trajectory.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def first_run(run, spec, tmp_path_factory):
    out = tmp_path_factory.mktemp("trajectory-report")
    report, cache = out / "run.html", out / "cache"
    code = cli.main(["trajectory", str(run), "--spec", str(spec), "--report", str(report), "--cache", str(cache)])
    return code, report, cache


def test_checkpoints_are_ordered_by_step(run):
    found = discover([str(run)])
    assert [(c.label, c.step) for c in found] == [("checkpoint-5", 5), ("checkpoint-99", 10), ("checkpoint-15", 15), ("checkpoint-20", 20)]


def test_a_regression_planted_in_the_last_checkpoint_exits_1(first_run, capsys):
    code, report, cache = first_run
    assert code == 1
    assert report.is_file() and len(list(cache.glob("*.json"))) == 4
    text = report.read_text(encoding="utf-8")
    assert 'data-check="final_norm_drop" data-latest="failed" data-regressed="true"' in text
    assert 'data-check="first_position" data-latest="passed" data-regressed="false"' in text


def test_a_rerun_reads_every_checkpoint_from_the_cache(first_run, run, spec, capsys):
    code, report, cache = first_run
    capsys.readouterr()
    again = cli.main(["trajectory", str(run), "--spec", str(spec), "--report", str(report), "--cache", str(cache)])
    captured = capsys.readouterr()
    assert again == 1
    assert "measuring" not in captured.err and "capturing" not in captured.err
    assert "4 checkpoint(s) measured, 4 read from the cache" in captured.out
    assert "final_norm_drop  checkpoint-5" in captured.out  # first passes at step 5 ...
    assert "REGRESSED" in captured.out  # ... and fails at the latest


def test_one_unloadable_checkpoint_is_reported_and_the_rest_measured(first_run, run, spec, tmp_path, capsys):
    _, _, cache = first_run
    broken = tmp_path / "out"
    broken.mkdir()
    for name in ("checkpoint-5", "checkpoint-15"):
        (broken / name).symlink_to(run / name, target_is_directory=True)
    (broken / "checkpoint-12").mkdir(parents=True)
    (broken / "checkpoint-12" / "config.json").write_text("{not json")
    capsys.readouterr()
    code = cli.main(["trajectory", str(broken), "--spec", str(spec), "--report", str(tmp_path / "r.html"), "--cache", str(cache)])
    out = capsys.readouterr().out
    assert code == 3
    assert "UNUSABLE checkpoint-12 (step 12)" in out and "not valid JSON" in out
    assert "2 checkpoint(s) measured" in out
    assert 'data-label="checkpoint-12" data-state="unusable"' in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_an_empty_folder_exits_3(tmp_path, spec, capsys):
    (tmp_path / "empty").mkdir()
    assert cli.main(["trajectory", str(tmp_path / "empty"), "--spec", str(spec), "--report", str(tmp_path / "r.html")]) == 3
    assert "nothing to measure" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None, reason="needs headless Chromium: apt-get install -y chromium")
def test_the_report_renders_in_chromium_without_errors(first_run):
    _, report, _ = first_run
    result = open_report(report)
    assert result.summary["errors"] == [] and result.summary["resources"] == []
    assert result.summary["pageRendered"] == "true"
    assert len(result.figures) >= 3  # two metric-against-step plots and the per-block heat map
    assert all(f["rendered"] and f["error"] is None and f["traces"] >= 1 for f in result.figures)
    # Pass bands only behind judged values, and every judged point on the side of the band its verdict says.
    assert band_contradictions(result.summary["figures"]) == []


# --- the Trainer callback ---------------------------------------------------------------------------------------

class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 32, length: int = 16) -> None:
        generator = torch.Generator().manual_seed(3)
        self.ids = torch.randint(3, 512, (n, length), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def _train(folder: Path, callback: GeomCheckCallback | None) -> tuple[LlamaForCausalLM, Trainer]:
    from tiny import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config(attention_dropout=0.2))  # dropout: training consumes the RNG
    args = TrainingArguments(output_dir=str(folder), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                             report_to=[], save_strategy="no", logging_steps=1, use_cpu=True, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=_Tokens(), processing_class=word_tokenizer(),
                      data_collator=default_data_collator)
    if callback is not None:
        callback.attach(trainer)
    trainer.train()
    return model, trainer


def test_the_callback_logs_metrics_and_leaves_training_unchanged(spec, tmp_path):
    callback = GeomCheckCallback(spec=spec, every_n_steps=2, budget=128)
    with_cb, trainer = _train(tmp_path / "with", callback)
    without, _ = _train(tmp_path / "without", None)
    logged = [entry for entry in trainer.state.log_history if "geom/final_norm_drop" in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
    assert all("geom/final_norm_drop_se" in e and e["geom/first_position_passed"] == 1.0 and "geom/first_position/block_0" in e
               for e in logged)
    for (name, a), (_, b) in zip(with_cb.state_dict().items(), without.state_dict().items()):
        assert torch.equal(a, b), name


def test_measuring_keeps_modes_gradients_and_rng(spec):
    from tiny import llama_config

    torch.manual_seed(0)
    model = LlamaForCausalLM(llama_config())
    model.train()
    model.model.layers[1].eval()  # a mixed state comes back as it was
    model(torch.arange(3, 11)[None], labels=torch.arange(3, 11)[None]).loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    states = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    results = GeomCheckCallback(spec=spec, budget=128).measure(model, word_tokenizer())
    assert {r.outcome.status for r in results} <= {"passed", "failed"}
    assert model.training and not model.model.layers[1].training and model.model.layers[2].training
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), states[0]) and random.getstate() == states[1]
    assert np.array_equal(np.random.get_state()[1], states[2])
