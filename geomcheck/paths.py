"""File names built from untrusted text, and writes confined to the folder they belong in.

A spec arriving in a pull request names its baseline and its report; a model reference names a
folder. None of that text may steer a write outside its root, so names are reduced to one safe
path component and every write target is checked again after resolving symlinks. Every file
geomcheck writes (baselines, reports, trajectory records) goes through ``write_atomically``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path

from geomcheck.errors import GeomcheckError

MAX_NAME_LENGTH = 128
# A name that is one path component on every platform: no separators, no leading dot (so never
# '.' or '..'), nothing that a shell or a terminal treats specially.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.\-]+")


class UnsafePathError(GeomcheckError, ValueError):
    """A write would land outside the folder it is confined to."""

    def __init__(self, target: Path, root: Path) -> None:
        self.target = target
        self.root = root
        super().__init__(f"refusing to write {target}: it resolves outside {root}")


class LinkedOutputError(GeomcheckError, ValueError):
    """A default output folder (reports/, baselines/, a trajectory cache) is a link: it may lead anywhere."""


def is_safe_name(text: str) -> bool:
    """Whether ``text`` may be used as it is as one file or folder name."""
    return len(text) <= MAX_NAME_LENGTH and SAFE_NAME.fullmatch(text) is not None


def safe_component(text: str, fallback: str = "unnamed") -> str:
    """``text`` reduced to one safe path component; distinct inputs that collide get a hash suffix."""
    if is_safe_name(text):
        return text
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    reduced = _UNSAFE_RUN.sub("-", folded).lstrip(".-_") or fallback
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{reduced[: MAX_NAME_LENGTH - 9]}-{digest}"


def confined(root: Path, *parts: str) -> Path:
    """``root / parts...`` as given (so messages show the path people typed), refused unless it
    resolves, symlinks included, to somewhere strictly inside ``root``."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target == base or not target.is_relative_to(base):
        raise UnsafePathError(Path(root).joinpath(*parts), base)
    return Path(root).joinpath(*parts)


# Bidirectional overrides and isolates reorder the text around them on screen and in a page.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def printable(text: str) -> str:
    """``text`` with control characters, bidi controls and lone surrogates escaped, so it cannot forge,
    clear or reorder terminal lines or a report's text."""
    out = []
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or char in "\u2028\u2029" or char in BIDI_CONTROLS:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def refuse_linked_default(folder: Path, option: str) -> Path:
    """``folder`` (a default output folder such as ``reports/``), refused when the project holds it as a link.

    A pull request can commit ``reports`` or ``baselines`` as a symlink to anywhere the CI job may
    write; geomcheck then wrote there. Folders it chooses itself must really lie where they appear:
    every existing component from the working directory down is checked. A folder named on the
    command line (``option``) is written wherever the user says, links included.
    """
    base = Path.cwd()
    current = base if not folder.is_absolute() else Path(folder.anchor)
    for part in (folder.parts if not folder.is_absolute() else folder.parts[1:]):
        current = current / part
        if current.is_symlink():
            try:
                target = current.resolve()
            except (OSError, RuntimeError):
                target = Path(os.readlink(current))
            raise LinkedOutputError(f"{current} is a link to {target}; geomcheck does not write through a link it did not "
                                    f"create (a repository can commit one): remove it, or name the folder with {option}")
        if not current.exists():
            break
    return folder


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    Readers see the old file or the new one, never half of one, even after a crash; renaming over a
    link replaces the link, not what it points to. ``mode`` is applied through the umask, like open().
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, mode & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
