"""The specs that ship with geomcheck, wherever it is installed: ``builtin:decoder``, ``builtin:llama``, ...

In a checkout they are the files in ``specs/``; in a wheel, the same files as the data package
``geomcheck.builtin_specs`` (pyproject.toml maps one onto the other). A project that adds geomcheck
to its own CI has no ``specs/`` of its own at first: commands and the pytest plugin then run the
built-in specs, and say so, instead of answering "file or directory not found: specs".
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from geomcheck.errors import GeomcheckError

PREFIX = "builtin:"
PROJECT_SPECS = "specs"  # the folder a project's own specs live in, looked up in the working directory


class UnknownBuiltinSpec(GeomcheckError, ValueError):
    """``builtin:NAME`` names no shipped spec."""


def folder() -> Path:
    """The installed folder of shipped specs (a real directory: the wheel unpacks it, a checkout has it)."""
    return Path(str(resources.files("geomcheck.builtin_specs")))


def names() -> list[str]:
    return sorted(p.stem for p in folder().iterdir() if p.suffix in (".yaml", ".yml"))


def path_for(text: str) -> Path:
    """``builtin:NAME`` as the shipped file; ``builtin:`` alone is every shipped spec (the folder)."""
    name = text.removeprefix(PREFIX).strip().removesuffix(".yaml")
    if not name:
        return folder()
    if name not in names():
        close = difflib.get_close_matches(name, names(), n=1)
        hint = f"; did you mean builtin:{close[0]}?" if close else ""
        raise UnknownBuiltinSpec(f"{text!r} names no built-in spec (built in: {', '.join(PREFIX + n for n in names())}){hint}")
    return folder() / f"{name}.yaml"


def expand(paths: list[str]) -> list[str]:
    """``paths`` with every ``builtin:...`` entry replaced by the file (or folder) it names."""
    return [str(path_for(p)) if str(p).startswith(PREFIX) else str(p) for p in paths]


def default_paths(cwd: Path | None = None) -> list[str]:
    """The project's ``specs/`` when it has one, else the built-in specs."""
    cwd = Path.cwd() if cwd is None else cwd
    return [PROJECT_SPECS] if (cwd / PROJECT_SPECS).is_dir() else [str(folder())]


def label(path: Path) -> str | None:
    """``builtin:NAME`` for a shipped spec file (how people see it in output), else None."""
    try:
        resolved = path.resolve()
        return f"{PREFIX}{resolved.stem}" if resolved.parent == folder().resolve() else None
    except (OSError, RuntimeError):
        return None
