"""docs/specs.md: its worked examples are valid specs, and it documents every field the schema has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from geomcheck.spec.schema import Expectation, Gate, Inputs, json_schema, parse_spec

DOC = Path(__file__).resolve().parent.parent / "docs" / "specs.md"
README = Path(__file__).resolve().parent.parent / "README.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_doc_exists_and_the_readme_links_it():
    assert DOC.is_file()
    readme = README.read_text(encoding="utf-8")
    assert "docs/specs.md" in readme and "docs/architectures.md" in readme


@pytest.mark.parametrize("index", range(4))
def test_every_yaml_example_is_a_valid_spec(index, tmp_path):
    blocks = _yaml_blocks()
    assert len(blocks) == 4  # the annotated file and three worked examples
    spec = parse_spec(blocks[index], tmp_path / f"example{index}.yaml")
    assert spec.checks


def test_every_field_is_documented():
    text = DOC.read_text(encoding="utf-8")
    names = set(json_schema()["properties"]) | set(Inputs.model_fields) | set(Expectation.model_fields) | set(Gate.model_fields)
    names |= {"id", "property", "params", "layers", "inputs", "expect", "tolerance", "gate", "reason", "families", "models"}
    missing = sorted(name for name in names if f"`{name}`" not in text and f"{name}:" not in text)
    assert missing == []
    for form in ("intermediate", "early", "late", "[11, 27]", "{from: 0.3, to: 0.9}", "{blocks: [3, 7]}", "mostly", "between"):
        assert form in text, form
