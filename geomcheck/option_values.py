"""Option values checked once, before any work, for the ``geomcheck`` command and the pytest plugin alike.

Each parser takes the text as typed and returns the value, or raises OptionValueError with what was
expected and what was given; each front end adds the option's name (argparse as usage, exit 2;
pytest as ``pytest.UsageError``, exit 4), so a bad value is one line, never a traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from geomcheck.errors import GeomcheckError

MAX_SEED = 2**63 - 1
DTYPE_NAMES = ("float32", "bfloat16", "float16")
DEVICE_FORMS = "cpu, cuda, cuda:N, mps or auto"
_DEVICE = re.compile(r"(cpu|cuda|mps|auto)(?::(\d{1,4}))?")


class OptionValueError(GeomcheckError, ValueError):
    """An option's value is unusable; the message omits the option's name, which the caller knows."""


def _integer(text: str, what: str) -> int:
    stripped = str(text).strip()
    if not stripped.isascii():  # int() also reads Arabic-Indic and other digits: '٣' would be 3
        raise OptionValueError(f"must be {what} in ASCII digits; got {str(text)[:40]!r}")
    try:
        return int(stripped, 10)
    except ValueError:
        raise OptionValueError(f"must be {what}; got {str(text)[:40]!r}") from None


def seed(text: str | int) -> int:
    """A seed in [0, 2**63 - 1]: what every seeded generator (numpy, torch) accepts."""
    value = _integer(str(text), "an integer seed ≥ 0")
    if not 0 <= value <= MAX_SEED:
        raise OptionValueError(f"must be an integer seed in [0, 2**63 - 1]; got {value}")
    return value


def positive_int(text: str | int) -> int:
    """An integer ≥ 1 (token budgets, counts): 0 would otherwise silently mean 'the default'."""
    value = _integer(str(text), "an integer ≥ 1")
    if value < 1:
        raise OptionValueError(f"must be an integer ≥ 1; got {value}")
    return value


def margin(text: str | float) -> float:
    """A number of standard errors in (0, 100]: ASCII, finite; 0 would let a bound touch a measured value."""
    stripped = str(text).strip()
    try:
        value = float(stripped) if stripped.isascii() else float("nan")
    except ValueError:
        value = float("nan")
    if not 0 < value <= 100:  # NaN fails too
        raise OptionValueError(f"must be a number of standard errors in (0, 100]; got {str(text)[:40]!r}")
    return value


def dtype(text: str) -> str:
    if text not in DTYPE_NAMES:
        raise OptionValueError(f"must be one of {', '.join(DTYPE_NAMES)}; got {str(text)[:40]!r}")
    return text


def device(text: str) -> str:
    """A device this machine has: ``cuda`` without CUDA is refused here, not deep inside ``model.to``."""
    match = _DEVICE.fullmatch(str(text).strip())
    if match is None:
        raise OptionValueError(f"must be {DEVICE_FORMS}; got {str(text)[:40]!r}")
    kind, index = match.group(1), match.group(2)
    if kind in ("cpu", "auto"):
        if index is not None:
            raise OptionValueError(f"{kind} takes no device index; got {text!r}")
        return kind
    import torch

    if kind == "mps":
        if not torch.backends.mps.is_available():
            raise OptionValueError("mps was asked for, but this machine has no usable Apple GPU; use cpu")
        return str(text).strip()
    if not torch.cuda.is_available():
        raise OptionValueError(f"{text} was asked for, but torch {torch.__version__} sees no CUDA device; use cpu")
    count = torch.cuda.device_count()
    if index is not None and int(index) >= count:
        raise OptionValueError(f"{text} was asked for, but this machine has {count} CUDA device(s): cuda:0 to cuda:{count - 1}")
    return str(text).strip()


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path.cwd()


def _expanded(text: str) -> Path:
    """``~`` and ``~user`` expanded; an unknown user is an option error, not a traceback."""
    try:
        return Path(str(text)).expanduser()
    except RuntimeError:  # Path.expanduser: "Could not determine home directory"
        raise OptionValueError(f"{str(text)[:60]!r} names a home folder that does not exist on this machine") from None


# Kernel-made folders: writes there either fail after a whole run or do something other than write a file.
PSEUDO_FOLDERS = (Path("/proc"), Path("/sys"), Path("/dev"))


def _writable_below(folder: Path, given: Path) -> None:
    """Whatever is missing of ``folder`` can be created: its nearest existing ancestor is a writable folder."""
    resolved = folder.absolute().resolve()
    if any(resolved == pseudo or resolved.is_relative_to(pseudo) for pseudo in PSEUDO_FOLDERS):
        raise OptionValueError(f"{str(given)!r} lies in {resolved.parts[1] and '/' + resolved.parts[1]}, a kernel folder; give an ordinary path")
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        raise OptionValueError(f"{str(given)!r} cannot be written: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionValueError(f"{str(given)!r} cannot be written: the folder {str(existing)!r} is not writable")


def output_folder(text: str) -> Path:
    """A folder to write into (baselines): existing, or creatable; never an existing file."""
    path = _expanded(text)
    if not str(text).strip():
        raise OptionValueError("must name a folder; got an empty value")
    if path.exists() and not path.is_dir():
        raise OptionValueError(f"{str(path)!r} is a file; give a folder (it is created when missing)")
    _writable_below(path, path)
    return path


def output_file(text: str) -> str:
    """A report path: a folder (default names inside) or a file, existing or creatable; not a device or socket.

    Returned as typed: a trailing separator is how a person says "a folder", and Path would drop it.
    """
    path = _expanded(text)
    if not str(text).strip():
        raise OptionValueError("must name a file or folder; got an empty value")
    if path.exists() and not (path.is_dir() or path.is_file()):
        raise OptionValueError(f"{str(path)!r} is neither a regular file nor a folder")
    if path.is_file() and not os.access(path, os.W_OK):
        raise OptionValueError(f"{str(path)!r} is not writable")
    _writable_below(path if path.is_dir() else path.parent, path)
    return str(text)
