"""Spec files as pytest collectors and each (check, model) pair as a test item."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

from geomcheck import option_values
from geomcheck.options import (
    ADAPTERS,
    ALLOW_PICKLE,
    BASELINE_DIR,
    BATCH_SIZE,
    DEVICE,
    DTYPE,
    SEED,
    STRICT,
    TOKEN_BUDGET,
    TRUST_REMOTE_CODE,
    ci_environment,
)
from geomcheck.capture.inputs import check_budget
from geomcheck.errors import GeomcheckError, InputError, SpecError, SpecWarning
from geomcheck.models.refs import LoadOptions, resolve
from geomcheck.pytest_plugin.plugin import MODELS_KEY, PLANNED_KEY, SESSION_KEY, SETTINGS_KEY, setting
from geomcheck.spec.schema import Check, Spec, load_spec

if TYPE_CHECKING:  # torch, transformers and scikit-learn load when the first check runs, not at start-up
    from geomcheck.runner import CheckResult, GeomSession

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """The checked options of one pytest run; the session itself (and its heavy imports) waits for the first check."""

    load_options: LoadOptions
    token_budget: int
    baseline_root: Path | None  # None: --geom-no-baseline
    update: bool
    force: bool
    batch_size: int = 8
    strict: bool = False  # --geom-strict or CI=true: a missing baseline or a model whose every check skipped fails


def build_settings(config: pytest.Config, models: list[str]) -> Settings:
    from geomcheck.capture.inputs import DEFAULT_TOKEN_BUDGET

    config.stash[MODELS_KEY] = models
    options = LoadOptions(
        device=_checked(config, DEVICE.pytest_dest, DEVICE.parse, "cpu"),
        dtype=_checked(config, DTYPE.pytest_dest, DTYPE.parse, "float32"),
        seed=_checked(config, SEED.pytest_dest, SEED.parse, 0),
        allow_pickle=bool(config.getoption(ALLOW_PICKLE.pytest_dest)),
        trust_remote_code=bool(config.getoption(TRUST_REMOTE_CODE.pytest_dest)),
        adapters=tuple(Path(p) for p in config.getoption(ADAPTERS.pytest_dest) or ())
        + ((config.rootpath / "adapters.yaml",) if (config.rootpath / "adapters.yaml").is_file() else ()),
    )
    budget = _checked(config, TOKEN_BUDGET.pytest_dest, TOKEN_BUDGET.parse, DEFAULT_TOKEN_BUDGET)
    if str(setting(config, "geom_report") or "").strip().lower() != "none":
        _checked(config, "geom_report", option_values.output_file, None)
    root = None
    if config.getoption("geom_no_baseline") and (config.getoption("geom_update") or config.getoption("geom_force_update")):
        raise pytest.UsageError("--geom-update and --geom-force-update record a baseline; --geom-no-baseline reads and writes none: "
                                "give one of them")
    if not config.getoption("geom_no_baseline"):
        root = _checked(config, BASELINE_DIR.pytest_dest, BASELINE_DIR.parse, config.rootpath / "baselines")
        if root == config.rootpath / "baselines" and root.is_symlink():  # the default, committed as a link: never followed
            raise pytest.UsageError(f"{root} is a link to {root.resolve()}; geomcheck does not read or write baselines through a "
                                    "link it did not create (a repository can commit one): remove it, or name the folder with "
                                    "--geom-baseline-dir")
    batch_size = _checked(config, BATCH_SIZE.pytest_dest, BATCH_SIZE.parse, 8)
    return Settings(options, budget, root, update=bool(config.getoption("geom_update") or config.getoption("geom_force_update")),
                    force=bool(config.getoption("geom_force_update")), batch_size=batch_size,
                    strict=bool(config.getoption(STRICT.pytest_dest) or config.getini(STRICT.pytest_dest)) or ci_environment())


def geom_session(config: pytest.Config) -> GeomSession:
    """The run's GeomSession, created (importing torch and the measurement code) when the first check needs it."""
    if SESSION_KEY not in config.stash:
        from geomcheck.runner import BaselineOptions, GeomSession

        settings = config.stash[SETTINGS_KEY]
        baselines = None if settings.baseline_root is None else BaselineOptions(settings.baseline_root, settings.update, settings.force,
                                                                                 ci=settings.strict)
        session = GeomSession(settings.load_options, settings.token_budget, baselines, batch_size=settings.batch_size)
        session.progress_opener = _terminal_opener(config)
        # The checks pytest collected and kept (after -k and the like): captures keep only what they read.
        session.plan((item.spec, item.check) for item in config.stash.get(PLANNED_KEY, ()))
        config.stash[SESSION_KEY] = session
    return config.stash[SESSION_KEY]


def _terminal_opener(config: pytest.Config):
    """Progress goes to the real stderr with pytest's output capture suspended, so a terminal sees it live."""
    import contextlib
    import sys

    capture = config.pluginmanager.getplugin("capturemanager")

    @contextlib.contextmanager
    def opened():
        with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
            yield sys.stderr

    return opened


def _checked(config: pytest.Config, dest: str, parse: Callable[[str], T], default: T) -> T:
    """The option (or ini key) parsed as ``geomcheck`` would; a bad value is one usage-error line, not an INTERNALERROR."""
    raw = setting(config, dest)
    if raw is None:
        return default
    try:
        return parse(str(raw))
    except option_values.OptionValueError as exc:
        raise pytest.UsageError(f"--{dest.replace('_', '-')} (or ini {dest}): {exc}") from None


class CheckFailed(AssertionError):
    """Raised by a failing check; carries the result so the failure text can lead with its headline."""

    def __init__(self, result: CheckResult) -> None:
        self.result = result
        super().__init__(result.outcome.headline)


class SpecFile(pytest.File):
    def collect(self):
        try:
            spec = load_spec(self.path)
        except SpecError as exc:
            raise self.CollectError(str(exc)) from None
        for warning in spec.warnings:
            self.warn(SpecWarning(warning))
        budget = self.config.stash[SETTINGS_KEY].token_budget
        for check in spec.checks:
            try:  # refused here, before any model loads
                check_budget(check.effective_inputs(spec), context_length=None, budget=budget)
            except InputError as exc:
                raise self.CollectError(f"{check.location}: inputs of check {check.id!r}: {exc}") from None
        for model in self.config.stash[MODELS_KEY]:
            problem = _preflight(self.config, model)
            if problem is not None:
                if problem.reported:
                    continue  # one collection error per model, in the first spec file that needs it
                problem.reported = True
                raise self.CollectError(problem.message)
            label = resolve(model).label
            for check in spec.checks:
                name = f"{check.id}[{label}]"
                # A string node id lets pytest split "[label]" into parameters, as it does for
                # parametrized functions, so --lf and --deselect recognise the item next time.
                item = CheckItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}", spec=spec, check=check, model=model)
                item.add_marker(pytest.mark.geomcheck)
                item.add_marker(pytest.mark.xdist_group(model))
                yield item


@dataclass
class _Unloadable:
    message: str
    reported: bool = False


PREFLIGHT_KEY = pytest.StashKey[dict[str, "_Unloadable | None"]]()
LOAD_FAILED_KEY = pytest.StashKey[dict[str, str]]()


def _preflight(config: pytest.Config, model: str) -> _Unloadable | None:
    """Once per model and session: what loading would refuse without reading weights (see loader.preflight)."""
    checked = config.stash.setdefault(PREFLIGHT_KEY, {})
    if model not in checked:
        try:
            ref = resolve(model)  # a misspelled alias or a missing path fails here, before torch is imported
            from geomcheck.models.loader import preflight

            preflight(ref, config.stash[SETTINGS_KEY].load_options)
            checked[model] = None
        except GeomcheckError as exc:
            checked[model] = _Unloadable(str(exc))
    return checked[model]


class CheckItem(pytest.Item):
    def __init__(self, *, spec: Spec, check: Check, model: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.check = check
        self.model = model

    def setup(self) -> None:
        """Load the model here, so a failure is one setup error on its first check and a skip on the rest."""
        failed = self.config.stash.setdefault(LOAD_FAILED_KEY, {})
        if self.model in failed:
            pytest.skip(f"model {self.model} could not be loaded; see the error at {failed[self.model]}")
        try:
            geom_session(self.config).model(self.model)
            return
        except GeomcheckError as exc:
            failed[self.model] = self.nodeid
            message = f"{type(exc).__name__}: {exc}"
        # Outside the except block, so the report holds this line alone: setup errors bypass repr_failure.
        pytest.fail(message, pytrace=self.config.getoption("verbose") > 0)

    def runtest(self) -> None:
        result = geom_session(self.config).run_check(self.spec, self.check, self.model)
        outcome = result.outcome
        for name, value in outcome.properties():
            self.user_properties.append((name, value))
        if outcome.status == "skipped":
            pytest.skip(outcome.headline)
        if outcome.status != "passed":
            raise CheckFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CheckFailed):
            outcome = excinfo.value.result.outcome
            return "\n".join([outcome.headline, *outcome.details])
        if isinstance(excinfo.value, GeomcheckError) and self.config.getoption("verbose") <= 0:
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, self.check.line - 1, self.name
