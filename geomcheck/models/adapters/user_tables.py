"""Adapter tables declared outside geomcheck: an ``adapters.yaml`` file or the ``geomcheck.adapters`` entry points.

A user table needs no edit of geomcheck's source. It is still accepted only after residual
verification on a probe batch (see adapters/__init__.py), like an inferred one.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from geomcheck.errors import AdapterFileError
from geomcheck.models.adapters.table import ArchitectureTable
from geomcheck.safe_read import UnsafeReadError, read_capped

ENTRY_POINT_GROUP = "geomcheck.adapters"
ADAPTER_FILE = "adapters.yaml"
ENV_VAR = "GEOMCHECK_ADAPTERS"

Path_ = str | list[str]


class _TableEntry(BaseModel):
    """One table in adapters.yaml; field meanings as in ArchitectureTable (docs/architectures.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: str
    model_types: list[str]
    blocks: Path_
    embed: Path_
    final_norm: Path_ | None = None
    norm_attn: Path_ | None = None
    attn: Path_
    norm_mlp: Path_ | None = None
    mlp: Path_
    position_scheme: Literal["learned", "rotary", "alibi", "sinusoidal", "none"] = "rotary"
    pos_embed: Path_ | None = None
    pos_embed_offset: int = 0
    prepend_bos: bool = True
    scheme: Literal["sequential", "parallel"] = "sequential"
    resid_mid_at: Path_ | None = None
    residual_scale: str | None = None

    def table(self, origin: Literal["user", "entry point"], where: str) -> ArchitectureTable:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.model_dump().items()}
        return ArchitectureTable(**values, origin=origin, note=f"declared in {where}")


class _AdapterFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    adapters: list[_TableEntry]


MAX_ADAPTER_BYTES = 256 << 10  # a table per model type is a few lines; this bounds the YAML a commit can make us parse


def load_adapter_file(path: Path) -> tuple[ArchitectureTable, ...]:
    """The tables in one adapters.yaml; every problem is an AdapterFileError naming the file."""
    try:
        raw = yaml.safe_load(read_capped(Path(path), MAX_ADAPTER_BYTES, "adapters file").decode("utf-8"))
    except UnsafeReadError as exc:
        raise AdapterFileError(str(path), f"cannot be read ({exc})") from None
    except UnicodeDecodeError as exc:
        raise AdapterFileError(str(path), f"is not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise AdapterFileError(str(path), f"is not valid YAML ({str(exc).splitlines()[0]})") from exc
    except RecursionError:
        raise AdapterFileError(str(path), "is nested too deeply to be an adapters file") from None
    try:
        parsed = _AdapterFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise AdapterFileError(str(path), f"{where}: {first['msg']}") from exc
    return tuple(entry.table("user", str(path)) for entry in parsed.adapters)


def adapter_files(explicit: tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """Explicit paths, then ``$GEOMCHECK_ADAPTERS`` (os.pathsep-separated), then ./adapters.yaml if present."""
    found = list(explicit)
    found += [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    if Path(ADAPTER_FILE).is_file():
        found.append(Path(ADAPTER_FILE))
    return tuple(dict.fromkeys(found))


def entry_point_tables() -> tuple[ArchitectureTable, ...]:
    """Tables published by installed packages under the ``geomcheck.adapters`` entry-point group."""
    tables: list[ArchitectureTable] = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = point.load()
        except (ImportError, AttributeError) as exc:
            raise AdapterFileError(f"entry point {point.name} ({point.value})", f"cannot be loaded ({exc})") from exc
        values = value if isinstance(value, (list, tuple)) else [value]
        for table in values:
            if not isinstance(table, ArchitectureTable):
                raise AdapterFileError(f"entry point {point.name} ({point.value})", "must name an ArchitectureTable or a list of them")
            origin = "entry point" if table.origin == "builtin" else table.origin
            tables.append(table if origin == table.origin else _with_origin(table, point.value))
    return tuple(tables)


def _with_origin(table: ArchitectureTable, where: str) -> ArchitectureTable:
    from dataclasses import replace

    return replace(table, origin="entry point", note=table.note or f"from entry point {where}")


def declared_tables(explicit: tuple[Path, ...] = ()) -> tuple[ArchitectureTable, ...]:
    """Every user-declared table, files before entry points (a file is the more local decision)."""
    tables: list[ArchitectureTable] = []
    for path in adapter_files(explicit):
        tables.extend(load_adapter_file(path))
    return (*tables, *entry_point_tables())
