"""pytest plugin: options and hooks only; inert unless a --geom-* option selects a model."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("geomcheck", "latent-space geometry checks")
    group.addoption("--geom-model", action="append", dest="geom_models", default=[], metavar="REF",
                    help="model reference to check (alias, hub id, directory, .gguf, random:...); repeatable")
