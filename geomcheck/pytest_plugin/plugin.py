"""pytest plugin: options and hooks only; inert unless a model is named with --geom-model (or ini geom_model)."""

from __future__ import annotations

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
    ("--geom-spec", "geom_spec", "paths", "PATH",
     "spec files or folders, or builtin:NAME for a shipped spec (default: specs/ if the folder exists, else every built-in spec)"),
    ("--geom-report", "geom_report", "string", "PATH", "HTML report path (default: reports/<model>-<spec>.html); 'none' disables"),
)
DEFAULTED_KEY = pytest.StashKey[str]()  # the line saying the built-in specs ran because the project has no specs/


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("geomcheck", "latent-space geometry checks (geomcheck)")
    group.addoption("--geom-model", action="append", dest="geom_model", default=None, metavar="REF",
                    help="model to check: alias, hub id, directory, .gguf or random:<ref>; repeatable")
    parser.addini("geom_model", type="linelist", help="models to check when --geom-model is not given")
    for option, dest, kind, metavar, text in _OPTIONS:
        action = "append" if kind == "paths" else "store"
        group.addoption(option, action=action, dest=dest, default=None, metavar=metavar, help=text)
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
    spec_paths = [Path(p) for p in _spec_paths(config)]
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


def _spec_paths(config: pytest.Config) -> list[str]:
    """--geom-spec (``builtin:NAME`` expanded), else the project's specs/, else the built-in specs (noted in the summary)."""
    from geomcheck.spec import builtin

    given = setting(config, "geom_spec")
    try:
        expanded = builtin.expand([str(p) for p in given]) if given else []
    except builtin.UnknownBuiltinSpec as exc:
        raise pytest.UsageError(f"--geom-spec: {exc}") from None
    for path in map(Path, expanded):
        if not path.exists():
            from geomcheck.spec.schema import missing_spec_hint

            raise pytest.UsageError(f"--geom-spec {path}: no such spec file or folder; {missing_spec_hint(path)}")
    if expanded:
        return expanded
    defaults = builtin.default_paths(Path(config.invocation_params.dir))
    if defaults != [builtin.PROJECT_SPECS]:
        config.stash[DEFAULTED_KEY] = (f"ran the built-in specs ({', '.join(builtin.PREFIX + n for n in builtin.names())}): "
                                       f"{config.invocation_params.dir} has no specs/ folder; give --geom-spec to choose")
        return defaults
    return [builtin.PROJECT_SPECS]


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

    from geomcheck.runner import all_skipped

    strict = session.config.stash[SETTINGS_KEY].strict
    specs = list({id(result.spec): result.spec for result in geom.results}.values())
    unused = applies_to_nothing(geom, specs, [str(p) for p in (setting(session.config, "geom_spec") or [])])
    lines = [f"warning: {line}" for line in unused]
    if unused and strict:
        lines.append("FAILED: a spec named with --geom-spec ran no check under --geom-strict / CI=true; fix its applies_to or leave it out")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    for model in all_skipped(geom):
        lines.append(("FAILED" if strict else "warning") + f": every check was skipped for {model}, so nothing about it was measured"
                     + (" (--geom-strict / CI=true)" if strict else "; --geom-strict (or CI=true) makes this fail"))
        if strict:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    lines.extend(_rootdir_lines(session.config, geom))
    defaulted = [session.config.stash[DEFAULTED_KEY]] if DEFAULTED_KEY in session.config.stash else []
    session.config.stash[WRITTEN_KEY] = [*defaulted, *_skipped_specs(geom), *lines, *geom.baseline_summary()]


def _rootdir_lines(config: pytest.Config, geom: GeomSession) -> list[str]:
    """Where baselines were looked up, and a warning when a bare path argument moved pytest's rootdir there.

    ``--geom-model ./ckpt`` (with a space) also hands ``./ckpt`` to pytest as a path, and pytest may then
    take its rootdir from it: baselines are looked up under the wrong folder and none is found.
    """
    if geom.book is None:
        return []
    lines = [f"baselines looked up under {geom.book.options.root.resolve()} (pytest rootdir {config.rootpath})"]
    invocation = Path(config.invocation_params.dir).resolve()
    args = [str(a) for a in config.invocation_params.args]
    for index, arg in enumerate(args[:-1]):
        if arg in ("--geom-model", "--geom-spec") and Path(args[index + 1]).exists():
            # Without an ini file, pytest takes the rootdir from the arguments' common ancestor: the bare path moved it.
            moved = config.rootpath.resolve() != invocation and config.inipath is None
            lines.append(f"warning: {arg} {args[index + 1]} (with a space) is also a path argument to pytest"
                         + (f", which moved its rootdir to {config.rootpath}" if moved else "")
                         + f"; write {arg}={args[index + 1]}")
    return lines


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
