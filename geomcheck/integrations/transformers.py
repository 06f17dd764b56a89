"""A transformers Trainer callback that measures the live model's geometry every N steps and logs every metric.

The measurement runs under ``torch.inference_mode`` (no autograd graph, no gradients touched), inside
``torch.random.fork_rng`` with Python's and NumPy's global RNG states saved and restored, and puts every
module back in the training mode it had: a run with the callback ends with the same weights as one
without (tests/test_trajectory.py checks this).
"""

from __future__ import annotations

import random
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import TrainerCallback

from geomcheck.capture.inputs import InputSpec
from geomcheck.gate.results import CheckResult
from geomcheck.models.loader import from_model
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import Check, Spec, load_spec

DEFAULT_BUDGET = 4096
MIN_SEQUENCES = 8  # the jackknife splits the sequences into 8 groups
OnRegression = Literal["warn", "stop"]


@dataclass
class _BudgetSession(GeomSession):
    """A session whose inputs are cut to ``token_budget`` tokens: fewer tokens first, then fewer sequences (at least 8)."""

    def inputs_for(self, spec: Spec, check: Check) -> InputSpec:
        wanted = super().inputs_for(spec, check)
        return _within(wanted, self.token_budget)


def _within(spec: InputSpec, budget: int) -> InputSpec:
    if spec.sequences * spec.tokens <= budget:
        return spec
    sequences = min(spec.sequences, max(MIN_SEQUENCES, budget // spec.tokens))
    return replace(spec, sequences=sequences, tokens=max(1, min(spec.tokens, budget // sequences)))


class GeomCheckCallback(TrainerCallback):
    """Measure ``spec``'s checks on the model being trained every ``every_n_steps`` steps and log each value.

    Parameters
    ----------
    spec : str, Path or Spec
        The spec file (or a parsed Spec) whose checks are measured.
    every_n_steps : int
        Measure when the global step is a multiple of this (and never at step 0).
    budget : int
        Largest sequences x tokens per input set; a spec asking for more is cut to fit (tokens first, at least
        8 sequences so standard errors stay defined).
    on_regression : "warn" or "stop"
        What to do when a check that passed at an earlier measurement fails now: a warning, or a warning and
        ``control.should_training_stop``.
    tokenizer : optional
        Tokenizer for text inputs when the Trainer has no ``processing_class``.
    prefix : str
        Logged names are ``<prefix>/<check id>`` (the check's own metric), ``<prefix>/<check id>_se`` and
        ``<prefix>/<check id>_passed`` (1 or 0), and ``<prefix>/<check id>/block_<i>`` for per-block checks.

    Logging goes through ``Trainer.log``, so ``state.log_history`` and every ``report_to`` integration
    (TensorBoard, W&B, MLflow, ...) get the values; ``Trainer`` gives callbacks no handle on itself, so bind
    it with ``callback.attach(trainer)`` (or construct the Trainer first and call ``attach``, which also
    adds the callback). Without a trainer the values are appended to ``state.log_history`` only.
    """

    def __init__(self, spec: str | Path | Spec, every_n_steps: int = 100, budget: int = DEFAULT_BUDGET, *,
                 on_regression: OnRegression = "warn", tokenizer: object = None, prefix: str = "geom", seed: int = 0) -> None:
        if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool) or every_n_steps < 1:
            raise ValueError(f"The 'every_n_steps' parameter of GeomCheckCallback must be an int >= 1. Got {every_n_steps!r} instead.")
        if not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_SEQUENCES:
            raise ValueError(f"The 'budget' parameter of GeomCheckCallback must be an int >= {MIN_SEQUENCES}. Got {budget!r} instead.")
        if on_regression not in ("warn", "stop"):
            raise ValueError(f"The 'on_regression' parameter of GeomCheckCallback must be 'warn' or 'stop'. Got {on_regression!r} instead.")
        self.spec = spec if isinstance(spec, Spec) else load_spec(spec)
        self.every_n_steps = every_n_steps
        self.budget = budget
        self.on_regression = on_regression
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.seed = seed
        self.trainer = None
        self.passed_before: set[str] = set()
        self.history: list[tuple[int, dict[str, float]]] = []
        self.regressions: list[tuple[int, str]] = []

    def attach(self, trainer) -> GeomCheckCallback:
        """Log through ``trainer.log`` and add this callback to ``trainer`` if it is not there yet."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.global_step == 0 or state.global_step % self.every_n_steps or model is None or not state.is_world_process_zero:
            return control
        results = self.measure(model, processing_class or self.tokenizer, step=state.global_step)
        logs = self._logs(results)
        self.history.append((state.global_step, logs))
        if self.trainer is not None:
            self.trainer.log(dict(logs))
        else:
            state.log_history.append({**logs, "step": state.global_step})
        regressed = [r.check.id for r in results if r.outcome.status == "failed" and r.check.id in self.passed_before]
        self.passed_before |= {r.check.id for r in results if r.outcome.status == "passed"}
        if regressed:
            self.regressions += [(state.global_step, check_id) for check_id in regressed]
            message = f"geomcheck: at step {state.global_step} {', '.join(regressed)} failed after passing earlier ({self.spec.display_path})"
            warnings.warn(message, stacklevel=2)
            if self.on_regression == "stop":
                print(f"{message}; stopping training", file=sys.stderr)
                control.should_training_stop = True
        return control

    def measure(self, model: torch.nn.Module, tokenizer: object, *, step: int | None = None) -> list[CheckResult]:
        """Run every check on ``model`` as it is now, leaving its modes, gradients and every global RNG as they were."""
        if tokenizer is None and self.spec.base_inputs().mode in ("corpus", "text", "dataset"):
            raise ValueError("GeomCheckCallback needs a tokenizer for text inputs: pass processing_class to the Trainer "
                             "or tokenizer= to the callback")
        modes = [(module, module.training) for module in model.modules()]
        python_state, numpy_state = random.getstate(), np.random.get_state()
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        name = f"step-{step}" if step is not None else "live"
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                session = _BudgetSession(token_budget=self.budget, baselines=None)
                session.add_model(name, from_model(model, name, tokenizer=tokenizer, seed=self.seed))
                return [session.run_check(self.spec, check, name) for check in self.spec.checks]
        finally:
            for module, training in modes:
                module.training = training
            random.setstate(python_state)
            np.random.set_state(numpy_state)

    def _logs(self, results: list[CheckResult]) -> dict[str, float]:
        logs: dict[str, float] = {}
        for result in results:
            name = f"{self.prefix}/{result.check.id}"
            if result.outcome.status in ("passed", "failed"):
                logs[f"{name}_passed"] = float(result.outcome.status == "passed")
            m = result.measurement
            metric = m.metrics.get(result.check.metric) if m is not None and m.valid else None
            if metric is None:
                continue
            if metric.aggregate is not None and np.isfinite(metric.aggregate):
                logs[name] = float(metric.aggregate)
                if metric.se is not None and np.isfinite(metric.se):
                    logs[f"{name}_se"] = float(metric.se)
            if result.check.expect.on == "per_layer":
                for block, value in sorted(metric.per_layer.items()):
                    if np.isfinite(value):
                        logs[f"{name}/block_{int(block)}"] = float(value)
        return logs


__all__ = ["GeomCheckCallback"]
