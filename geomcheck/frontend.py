"""The steps every ``geomcheck`` command that checks models takes, written once: read the specs and say
their warnings, report a fault as one line with the command's name and the right exit code, write a
page and say where.

``run``, ``compare`` and ``trajectory`` differ in what they measure and print; these steps are the same.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from geomcheck.errors import GeomcheckError
from geomcheck.exit_codes import ExitCode
from geomcheck.spec.schema import Spec


def error(command: str, message: str) -> ExitCode:
    """One line on stderr naming the command; the code for "the gate could not run"."""
    print(f"geomcheck {command}: error: {message}", file=sys.stderr)
    return ExitCode.ERROR


def spec_paths(command: str, given: Sequence[str] | None) -> tuple[str, ...]:
    """The spec paths a command was given, else the project's ``specs/``, else the built-in specs (said on stderr)."""
    from geomcheck.spec import builtin

    if given:
        return tuple(given)
    defaults = builtin.default_paths()
    if defaults != [builtin.PROJECT_SPECS]:
        print(f"geomcheck {command}: no specs/ folder here; running the built-in specs "
              f"({', '.join(builtin.PREFIX + name for name in builtin.names())}); give --spec to choose", file=sys.stderr)
    return tuple(defaults)


def read_specs(command: str, paths: Sequence[str]) -> list[Spec]:
    """Every spec under ``paths`` (``builtin:NAME`` for a shipped one), validated (SpecError lists every problem);
    warnings printed as the command's."""
    from geomcheck.spec import builtin
    from geomcheck.spec.schema import load_specs

    specs = load_specs([Path(p) for p in builtin.expand(list(paths))])
    for warning in (w for spec in specs for w in spec.warnings):
        print(f"geomcheck {command}: {warning}", file=sys.stderr)
    return specs


def write_page(command: str, write: Callable[[], Sequence[Path]], fallback: str | None = None) -> ExitCode | None:
    """Run ``write`` and print each page it wrote; None on success, else the error's exit code (one line)."""
    try:
        written = write()
    except OSError as exc:
        return error(command, f"cannot write the report: {exc.strerror or exc} ({exc.filename or fallback})")
    for path in written:
        print(f"report: {path}")
    return None


__all__ = ["GeomcheckError", "error", "read_specs", "spec_paths", "write_page"]
