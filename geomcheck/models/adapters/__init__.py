"""Registry of architecture tables, looked up by the Hugging Face ``config.model_type``.

Precedence: user-declared tables (adapters.yaml, then ``geomcheck.adapters`` entry points), then the
built-in tables, then a table inferred from the module tree. Declared and inferred tables are
accepted only after residual verification on a probe batch; refused model types fail before that.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from torch import nn

from geomcheck.errors import UnsupportedArchitectureError
from geomcheck.models.adapters.families import FAMILY_TABLES
from geomcheck.models.adapters.gpt2 import GPT2
from geomcheck.models.adapters.infer import InferenceRefused, infer_table
from geomcheck.models.adapters.llama import LLAMA
from geomcheck.models.adapters.probe import probe
from geomcheck.models.adapters.refusals import composite_refusal, refusal_for
from geomcheck.models.adapters.table import (
    ArchitectureTable,
    BlockScheme,
    PositionScheme,
)
from geomcheck.models.adapters.user_tables import declared_tables

TABLES: tuple[ArchitectureTable, ...] = (GPT2, LLAMA, *FAMILY_TABLES)


def supported_model_types(tables: tuple[ArchitectureTable, ...] = TABLES) -> tuple[str, ...]:
    return tuple(t for table in tables for t in table.model_types)


def find_table(model_type: str, tables: tuple[ArchitectureTable, ...] = TABLES) -> ArchitectureTable | None:
    for table in tables:
        if model_type in table.model_types:
            return table
    return None


def table_for(model_type: str, tables: tuple[ArchitectureTable, ...] = TABLES) -> ArchitectureTable:
    """The table for a model type, without a model at hand (no inference possible yet)."""
    reason = refusal_for(model_type)
    if reason is not None:
        raise UnsupportedArchitectureError(model_type, supported_model_types(), reason, fixable=False)
    table = find_table(model_type, tables)
    if table is None:
        raise UnsupportedArchitectureError(model_type, supported_model_types())
    return table


def check_model_type(model_type: str, config: object | None = None) -> None:
    """Refuse up front, before any weights load, a model type no adapter could capture.

    ``config`` (an instance or the config class) adds the check for composite multimodal models.
    """
    reason = refusal_for(model_type) or (composite_refusal(config) if config is not None else None)
    if reason is not None:
        raise UnsupportedArchitectureError(model_type, supported_model_types(), reason, fixable=False)


def adapter_for(
    model: nn.Module, *, adapter_files: tuple[Path, ...] = (), tables: tuple[ArchitectureTable, ...] = TABLES, infer: bool = True
) -> ArchitectureTable:
    """The table that captures ``model``: declared, built in, or inferred and verified; else a refusal."""
    config = model.config
    model_type = config.model_type
    check_model_type(model_type, config)
    declared = declared_tables(adapter_files)
    table = find_table(model_type, declared)
    probed = table is not None
    table = table or find_table(model_type, tables)
    if table is not None:
        try:
            table = table.for_config(config)
        except ValueError as exc:
            raise UnsupportedArchitectureError(model_type, supported_model_types(), str(exc), fixable=False) from None
        if probed:
            result = probe(model, table)
            if not result.ok:
                reason = f"the {table.origin} table ({table.note}) fails residual verification at {result.failure}"
                raise UnsupportedArchitectureError(model_type, supported_model_types(), reason)
        return table
    if not infer:
        raise UnsupportedArchitectureError(model_type, supported_model_types())
    try:
        return replace(infer_table(model))
    except InferenceRefused as exc:
        raise UnsupportedArchitectureError(model_type, supported_model_types(), f"no adapter table, and {exc}") from None


__all__ = [
    "ArchitectureTable",
    "BlockScheme",
    "PositionScheme",
    "TABLES",
    "adapter_for",
    "check_model_type",
    "find_table",
    "supported_model_types",
    "table_for",
]
