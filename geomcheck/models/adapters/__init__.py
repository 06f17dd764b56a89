"""Registry of architecture tables, looked up by the Hugging Face ``config.model_type``."""

from __future__ import annotations

from geomcheck.errors import UnsupportedArchitectureError
from geomcheck.models.adapters.gpt2 import GPT2
from geomcheck.models.adapters.llama import LLAMA
from geomcheck.models.adapters.table import ArchitectureTable, PositionScheme

TABLES: tuple[ArchitectureTable, ...] = (GPT2, LLAMA)


def supported_model_types() -> tuple[str, ...]:
    return tuple(t for table in TABLES for t in table.model_types)


def table_for(model_type: str) -> ArchitectureTable:
    for table in TABLES:
        if model_type in table.model_types:
            return table
    raise UnsupportedArchitectureError(model_type, supported_model_types())


__all__ = ["ArchitectureTable", "PositionScheme", "TABLES", "supported_model_types", "table_for"]
