"""The trajectory cache: one JSON record per (checkpoint, spec), keyed by what would change the numbers.

The key covers the spec file's text, the load options that change values (dtype, seed), the token
budget, geomcheck's version, and the checkpoint's files (name, size, modification time) — so a
checkpoint measured with the same spec and inputs is read back, and anything else is measured again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

from geomcheck.paths import safe_component, write_atomically
from geomcheck.safe_read import read_capped, strict_json
from geomcheck.spec.schema import Spec
from geomcheck.trajectory.records import CheckpointRecord

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
IDENTITY_FILES = ("config.json",)


MAX_RECORD_BYTES = 16 << 20  # one checkpoint's values and per-block values: kilobytes; a planted giant is refused unread

def cache_key(reference: str, spec: Spec, *, dtype: str, seed: int, token_budget: int) -> str:
    """A short hash of everything that decides the measured values of ``reference`` under ``spec``."""
    try:
        spec_text = spec.path.read_text(encoding="utf-8")
    except OSError:
        spec_text = spec.model_dump_json(exclude={"path", "file"})
    identity = {
        "checkpoint": _checkpoint_identity(reference),
        "spec": hashlib.sha256(spec_text.encode("utf-8")).hexdigest(),
        "dtype": dtype,
        "seed": seed,
        "token_budget": token_budget,
        "geomcheck": _version(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def record_path(folder: Path, label: str, spec: Spec, key: str) -> Path:
    return folder / f"{safe_component(label, 'checkpoint')}-{safe_component(spec.name, 'spec')}-{key}.json"


def read(path: Path) -> CheckpointRecord | None:
    """The cached record, or None when there is none or it cannot be read (it is then measured again)."""
    if not path.is_file():
        return None
    try:
        text = read_capped(path, MAX_RECORD_BYTES, "trajectory cache record").decode("utf-8")
        return CheckpointRecord.from_json(strict_json(text))
    except RecursionError:
        print(f"geomcheck trajectory: ignoring the cache file {path} (nested too deeply to be a record); measuring again", file=sys.stderr)
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"geomcheck trajectory: ignoring the unreadable cache file {path} ({exc}); measuring again", file=sys.stderr)
        return None


def write(path: Path, record: CheckpointRecord) -> None:
    write_atomically(path, json.dumps(record.to_json(), indent=1, allow_nan=False))


def _checkpoint_identity(reference: str) -> object:
    path = Path(reference.removeprefix("random:")).expanduser()
    if path.is_file():
        return [str(path.resolve()), *_stat(path)]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name in IDENTITY_FILES))
        return [str(path.resolve()), reference.startswith("random:"), [[p.name, *_stat(p)] for p in files]]
    return reference  # an alias or hub id: its name is all there is without loading it


def _stat(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def _version() -> str:
    try:
        return metadata.version("geomcheck")
    except metadata.PackageNotFoundError:
        return "unknown"
