"""Reading files that a pull request can commit: confined to a root, regular files only, capped before reading.

A spec names its input text by path, and the folder it names may hold links planted beside it.
What is read for inputs is tokenized, measured and can be shown in a report, so a link to
``/proc/self/environ`` or to a key file elsewhere on the CI machine would publish it. Confining
only the name the spec wrote is not enough: every file is checked where it really lies, on the
open descriptor itself, so a link swapped in between the check and the read escapes no better.
The same reads refuse FIFOs and devices (a FIFO blocks the reader forever) and cap the size
from ``fstat`` before a byte is read (a sparse multi-gigabyte file must not reach memory).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from geomcheck.errors import GeomcheckError

# Kernel-made files: regular to stat, sized 0, and full of the running process's secrets.
PSEUDO_FILESYSTEMS = (Path("/proc"), Path("/sys"), Path("/dev"))
# Linux names an open descriptor's real path here; elsewhere the pre-open check stands alone.
_FD_LINKS = Path("/proc/self/fd")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class UnsafeReadError(GeomcheckError, ValueError):
    """A file may not be read: it lies outside its root, is not a regular file, or is too large."""


@dataclass(frozen=True)
class ReadLimits:
    """How much one read may take; exceeding any of them is an error, never a silent cut."""

    file_bytes: int
    total_bytes: int
    files: int


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def _is_pseudo(path: Path) -> bool:
    return any(_within(path, special) for special in PSEUDO_FILESYSTEMS)


def real_path(path: Path, what: str) -> Path:
    """``path`` with every link followed; a missing target or a loop is an UnsafeReadError naming ``what``."""
    try:
        return path.resolve(strict=True)
    except RuntimeError:  # a symlink loop before Python 3.13
        raise UnsafeReadError(f"{what} {path} is a symlink loop") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeReadError(f"{what} {path} is a symlink loop") from None
        raise UnsafeReadError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None


def check_confined(path: Path, root: Path, what: str) -> Path:
    """The real location of ``path``, refused unless it is inside ``root`` and outside the kernel's pseudo-files."""
    real = real_path(path, what)
    root = real_path(root, "root folder")
    shown = f"{what} {path}" + (f" (a link to {real})" if real != path.absolute() else "")
    if _is_pseudo(real):
        raise UnsafeReadError(f"{shown} is a kernel or device file; inputs are read only from ordinary files")
    if not _within(real, root):
        raise UnsafeReadError(f"{shown} lies outside {root}; inputs are read only from files inside it")
    return real


def read_confined(path: Path, root: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, a regular file inside ``root`` of at most ``limit`` bytes.

    The name is checked first; then the descriptor: opened without following a final link and
    without blocking, it must be a regular file whose real location (on Linux) is still inside
    ``root``, and its size is compared with ``limit`` before reading.
    """
    real = check_confined(path, root, what)

    def still_inside(fd: int) -> None:
        opened = _opened_path(fd)
        if opened is not None and (_is_pseudo(opened) or not _within(opened, real_path(root, "root folder"))):
            raise UnsafeReadError(f"{what} {path} resolved outside {root} when opened; inputs are read only from files inside it")

    return _read_regular(real, path, limit, what, _OPEN_FLAGS, still_inside)


def read_capped(path: Path, limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, wherever it lies (a path the user named).

    For files read whole before parsing (specs, adapters.yaml, baselines): a FIFO returns at once instead
    of blocking the run, ``/dev/zero`` or a huge file is refused from ``fstat`` before a byte is read, and a
    file that grows past the cap while read is refused rather than cut.
    """
    return _read_regular(path, path, limit, what, _OPEN_FLAGS & ~getattr(os, "O_NOFOLLOW", 0), lambda fd: None)


def _read_regular(target: Path, shown: Path, limit: int, what: str, flags: int, check: Callable[[int], None]) -> bytes:
    """Open ``target`` with ``flags``, require a regular file that passes ``check`` and fits ``limit``, read it."""
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the final component became a link after the check
            raise UnsafeReadError(f"{what} {shown} changed into a link while it was read") from None
        raise UnsafeReadError(f"{what} {shown} cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeReadError(f"{what} {shown} is not a regular file ({_kind(info.st_mode)})")
        check(fd)
        if info.st_size > limit:
            raise UnsafeReadError(f"{what} {shown} holds {info.st_size:,} bytes, over the limit of {limit:,}")
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew since fstat, or a file whose size stat does not tell
        raise UnsafeReadError(f"{what} {shown} holds more than the limit of {limit:,} bytes")
    return data


def regular_size(path: Path, root: Path, what: str = "file") -> int:
    """The size of ``path``, refused unless it is a regular file inside ``root`` (for files a library reads itself)."""
    real = check_confined(path, root, what)
    info = real.stat()
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeReadError(f"{what} {path} is not a regular file ({_kind(info.st_mode)})")
    return info.st_size


def walk_files(folder: Path, root: Path, suffixes: tuple[str, ...] | None, max_files: int, what: str = "file") -> list[Path]:
    """Files under ``folder`` named with one of ``suffixes`` (None: every file), sorted; links to folders are not entered.

    Links to files are returned (by their name inside ``folder``) and judged when read, so a link that
    escapes is an error rather than a silent omission. More than ``max_files`` candidates is an error:
    a folder of a million files must not stall collection.
    """
    check_confined(folder, root, what)
    found: list[Path] = []
    for path in _walk(folder):
        if suffixes is None or path.suffix in suffixes:
            found.append(path)
            if len(found) > max_files:
                named = f" {'/'.join(suffixes)}" if suffixes else ""
                raise UnsafeReadError(f"{what} folder {folder} holds more than {max_files:,}{named} files")
    return sorted(found)


def _walk(folder: Path) -> Iterator[Path]:
    def refuse(exc: OSError) -> None:
        raise UnsafeReadError(f"folder {exc.filename} cannot be listed ({exc.strerror or exc})")

    for top, _, names in os.walk(folder, onerror=refuse, followlinks=False):
        for name in names:
            yield Path(top) / name


def _opened_path(fd: int) -> Path | None:
    link = _FD_LINKS / str(fd)
    try:
        return Path(os.readlink(link))
    except OSError:
        return None


def _read_at_most(fd: int, count: int) -> bytes:
    chunks, left = [], count
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


class JSONValueError(ValueError):
    """A number in a JSON file that geomcheck never writes: Infinity, NaN, 1e999 or an integer of thousands of digits."""


MAX_INT_DIGITS = 40  # every count and step geomcheck writes fits in far fewer


def _refuse_constant(name: str) -> float:
    raise JSONValueError(f"holds the non-finite number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JSONValueError(f"holds the number {text[:40]}, too large to be finite")
    return value


def _short_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise JSONValueError(f"holds an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def strict_json(text: str, object_pairs_hook: Callable | None = None) -> object:
    """JSON as geomcheck writes it (``allow_nan=False``): finite numbers of sane size only.

    ``json.loads`` accepts ``Infinity`` and ``1e999`` (as inf) and parses a 5,000-digit integer until
    Python's digit limit raises deep inside; a file a pull request edited gets one clear ValueError
    instead (JSONValueError for numbers, RecursionError left to the caller for nesting).
    """
    import json

    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_short_int,
                      object_pairs_hook=object_pairs_hook)
