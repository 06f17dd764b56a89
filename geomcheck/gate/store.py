"""Where baselines live and how they are written: one JSON file per (model, spec), replaced atomically
under an exclusive lock, read strictly (duplicate keys, other formats and non-objects are refused).

An interrupted run leaves the previous baseline or the new one, and two runs updating one file at once
both keep their entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from geomcheck.gate.codec import FORMAT, BaselineError, document
from geomcheck.paths import confined, safe_component, write_atomically
from geomcheck.safe_read import JSONValueError, UnsafeReadError, read_capped, strict_json

FILE_MODE = 0o644
MAX_BASELINE_BYTES = 64 << 20  # a 100-block model with per-block replicates is a few MB


def baseline_path(root: Path, model_key: str, spec_name: str) -> Path:
    """``root/<model key>/<spec name>.json``, refused unless it resolves inside ``root``."""
    return confined(root, safe_component(model_key, "model"), f"{safe_component(spec_name, 'spec')}.json")


def read(path: Path) -> dict[str, object]:
    try:
        data = strict_json(read_capped(Path(path), MAX_BASELINE_BYTES, "baseline").decode("utf-8"), object_pairs_hook=_unique_keys(path))
    except JSONValueError as exc:
        raise BaselineError(f"{path}: {exc}, which no baseline holds; re-create it with --geom-update") from None
    except UnsafeReadError as exc:
        raise BaselineError(f"{exc}; re-create it with --geom-update") from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{path}: not UTF-8 text (byte {exc.start}); re-create it with --geom-update") from None
    except RecursionError:
        raise BaselineError(f"{path}: nested too deeply to be a baseline; re-create it with --geom-update") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}:{exc.colno}: baseline is not valid JSON ({exc.msg}); re-create it with --geom-update") from None
    if not isinstance(data, dict) or not isinstance(data.get("checks"), dict):
        raise BaselineError(f"{path}: not a geomcheck baseline; re-create it with --geom-update")
    if data.get("format") != FORMAT:
        raise BaselineError(
            f"{path}: baseline format {data.get('format')!r}, this geomcheck reads format {FORMAT} "
            "(values with standard errors); re-record it with --geom-update"
        )
    return data


def lock_file(path: Path) -> Path:
    """Where the lock for ``path`` lives: a private folder of this user's under the temporary directory.

    Not beside the baseline: an empty ``.spec.json.lock`` left in the user's tree ended up committed with
    ``git add baselines/``, and a lock file a pull request commits as a symlink would be followed. The
    name is a hash of the baseline's real path, so every process updating one baseline meets one lock.
    """
    folder = Path(tempfile.gettempdir()) / f"geomcheck-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise OSError(f"{folder} is not a folder owned by this user; remove it so geomcheck can keep its locks there")
    key = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return folder / f"{key}.lock"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``path`` for a read-merge-write (``lock_file``; never a link)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_file(path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def merge_and_write(path: Path, model: str, spec_name: str, entries: Mapping[str, dict[str, object]]) -> None:
    """Merge ``entries`` into the baseline at ``path`` under the lock, replacing it atomically."""
    with locked(path):
        _remove_stale_temporaries(path)
        merged = dict(read(path)["checks"]) if path.is_file() and _same_format(path) else {}
        merged.update(entries)
        write_atomic(path, document(model, spec_name, merged))


def _same_format(path: Path) -> bool:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _remove_stale_temporaries(path: Path) -> None:
    """Temporaries of this target left by a killed writer (the lock is held, so none is live)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def write_atomic(path: Path, data: Mapping[str, object]) -> None:
    """The baseline document as sorted, one-number-per-line JSON, replaced atomically (paths.write_atomically)."""
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n", FILE_MODE)


def _unique_keys(path: Path):
    """A JSON object hook refusing a key given twice: an edit could otherwise hide the first value behind a second."""

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        data: dict[str, object] = {}
        for key, value in pairs:
            if key in data:
                raise BaselineError(f"{path}: the key {key!r} appears twice in one object; a baseline holds each once. "
                                    "Re-record it with --geom-update")
            data[key] = value
        return data

    return hook
