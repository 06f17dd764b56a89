"""pytest plugin: options and hooks only; inert unless a model is named with --geom-model (or ini geom_model)."""

from __future__ import annotations

import os

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from geomcheck import options

if TYPE_CHECKING:  # the heavy modules load only when a model is named, so other projects' runs stay fast
    from geomcheck.pytest_plugin.collect import Settings  # noqa: F401  (named in the StashKey annotation)
    from geomcheck.runner import GeomSession  # noqa: F401  (named in the StashKey annotation)

SESSION_KEY = pytest.StashKey["GeomSession"]()  # created when the first check runs (collect.geom_session)
SETTINGS_KEY = pytest.StashKey["Settings"]()  # set at configure time whenever a model is named
MODELS_KEY = pytest.StashKey[list[str]]()
SPEC_PATHS_KEY = pytest.StashKey[list[Path]]()
WRITTEN_KEY = pytest.StashKey[list[str]]()
PLANNED_KEY = pytest.StashKey[list]()  # the CheckItems left to run after collection (-k, deselection)
SPEC_SUFFIXES = (".yaml", ".yml")

_OPTIONS = (
    # (option, dest, ini type, help): the pytest-only ones; the rest come from geomcheck.options
    ("--geom-spec", "geom_spec", "paths", "spec files or folders (default: specs/)"),
    ("--geom-report", "geom_report", "string", "HTML report path (default: reports/<model>-<spec>.html); 'none' disables"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("geomcheck", "latent-space geometry checks (geomcheck)")
    group.addoption("--geom-model", action="append", dest="geom_model", default=None, metavar="REF",
                    help="model to check: alias, hub id, directory, .gguf or random:<ref>; repeatable")
    parser.addini("geom_model", type="linelist", help="models to check when --geom-model is not given")
    for option, dest, kind, text in _OPTIONS:
        action = "append" if kind == "paths" else "store"
        group.addoption(option, action=action, dest=dest, default=None, help=text)
        parser.addini(dest, type="linelist" if kind == "paths" else "string", help=text)
    options.add_to_pytest(parser, group, (*options.MODEL_OPTIONS, *options.RUN_OPTIONS))


def setting(config: pytest.Config, dest: str) -> object:
    """Command line first, then the ini key of the same name."""
    value = config.getoption(dest)
    return value if value not in (None, []) else (config.getini(dest) or None)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    models = setting(config, "geom_model")
    if not models:
        _refuse_spec_without_model(config)
        return
    if getattr(config.option, "dist", "no") == "load":
        # All checks of one model go to one xdist worker, so each model is loaded and captured once.
        config.option.dist = "loadgroup"
    from geomcheck.pytest_plugin.collect import build_settings

    config.stash[SETTINGS_KEY] = build_settings(config, list(models))
    spec_paths = [Path(p) for p in (setting(config, "geom_spec") or ["specs"])]
    config.stash[SPEC_PATHS_KEY] = [_resolved(p, "--geom-spec") for p in spec_paths]
    config.addinivalue_line("markers", "geomcheck: a geometry check generated from a spec file")
    # Set on every check so pytest-xdist keeps a model's checks on one worker; registered, so runs without
    # xdist do not warn about an unknown mark.
    config.addinivalue_line("markers", "xdist_group(name): checks of one model run on one xdist worker")
    # Without explicit paths, run the spec checks rather than the project's own tests; with explicit
    # paths, add spec paths only when --geom-spec names them.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [str(p) for p in spec_paths]
    elif config.getoption("geom_spec"):
        config.args = list(config.args) + [str(p) for p in spec_paths if str(p) not in config.args]
    if str(setting(config, "geom_report") or "").lower() != "none":
        # Registered on xdist workers too: the worker that ran a model's checks holds its measurements.
        from geomcheck.pytest_plugin.reporter import ReportWriter

        config.pluginmanager.register(ReportWriter(config), "geomcheck-report")


def _refuse_spec_without_model(config: pytest.Config) -> None:
    """A spec named on the command line without a model would be 'not found' (nothing collects it): say what is missing."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return
    for arg in config.args:
        path = Path(str(arg).split("::")[0])
        if path.suffix in SPEC_SUFFIXES and _looks_like_spec(path):
            raise pytest.UsageError(
                f"{path} is a geomcheck spec; checking it needs a model. Name one with --geom-model, e.g. "
                f"pytest --geom-model=smollm2-135m {path} (an alias from `geomcheck models`, a hub id, a checkpoint "
                "folder, a .gguf file, or random:<any of these>), or set geom_model in the pytest ini file")


def _looks_like_spec(path: Path) -> bool:
    """A YAML file with a top-level ``checks:`` key; other plugins' YAML test files are left alone."""
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            head = stream.read(65536)
    except OSError:
        return False
    return any(line.startswith("checks:") or line.startswith("checks :") for line in head.splitlines())


def pytest_collection_finish(session: pytest.Session) -> None:
    if SETTINGS_KEY not in session.config.stash:
        return  # no model named: geomcheck collects nothing
    from geomcheck.pytest_plugin.collect import CheckItem

    session.config.stash[PLANNED_KEY] = [item for item in session.items if isinstance(item, CheckItem)]


def pytest_sessionfinish(session: pytest.Session) -> None:
    geom = session.config.stash.get(SESSION_KEY, None)
    if geom is None:
        return
    from geomcheck.runner import applies_to_nothing

    specs = list({id(result.spec): result.spec for result in geom.results}.values())
    unused = applies_to_nothing(geom, specs, [str(p) for p in (setting(session.config, "geom_spec") or [])])
    lines = [f"warning: {line}" for line in unused]
    if unused and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        lines.append("FAILED: a spec named with --geom-spec ran no check under CI=true; fix its applies_to or leave it out")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    session.config.stash[WRITTEN_KEY] = [*_skipped_specs(geom), *lines, *geom.baseline_summary()]


def _skipped_specs(geom: GeomSession) -> list[str]:
    """One line per (spec, model) whose every check was skipped, with the reason, so the default summary shows why."""
    pairs: dict[tuple[str, str], list] = {}
    for result in geom.results:
        pairs.setdefault((result.spec.display_path, result.model), []).append(result.outcome)
    return [f"{spec} skipped for {model} ({len(outcomes)} check{'s' if len(outcomes) != 1 else ''}): {outcomes[0].headline.split(' skipped: ', 1)[-1]}"
            for (spec, model), outcomes in pairs.items() if all(o.status == "skipped" for o in outcomes)]


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for line in config.stash.get(WRITTEN_KEY, []):
        terminalreporter.write_line(f"geomcheck {line}")


def _resolved(path: Path, option: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop before Python 3.13
        raise pytest.UsageError(f"{option} {path}: cannot be resolved (a symlink loop?)") from None


def is_spec_file(path: Path, spec_paths: list[Path]) -> bool:
    if path.suffix not in SPEC_SUFFIXES:
        return False
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop is no spec; pytest reports the path itself if it was named
        return False
    return any(resolved == root or root in resolved.parents for root in spec_paths)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if SETTINGS_KEY in parent.config.stash and is_spec_file(file_path, parent.config.stash[SPEC_PATHS_KEY]):
        from geomcheck.pytest_plugin.collect import SpecFile

        return SpecFile.from_parent(parent, path=file_path)
    return None
