"""Report figures read right (issue #15): full log tick labels, no tangles of lines, no duplicates, an overview, nan explained."""

from __future__ import annotations

import json
import re

import pytest
from test_report import run_fixture_session

from geomcheck.report import write_reports
from geomcheck.spec.schema import load_spec

EXTRA = """\
name: tiny-extra
inputs: {mode: corpus, sequences: 6, tokens: 24, seed: 2}
checks:
  - id: ratio_early
    property: first_position_norm
    layers: [0, 0]
    expect: {min: 0.0}
  - id: ratio_late
    property: first_position_norm
    layers: [1, 1]
    expect: {min: 0.0}
  - id: onset
    property: first_position_norm
    params: {threshold: 1.0e6}
    expect: {metric: onset_layer, min: 0}
"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("readability")
    session = run_fixture_session(root)
    spec_path = root / "extra.yaml"
    spec_path.write_text(EXTRA)
    spec = load_spec(spec_path)
    model = next(iter(session.models()))
    for check in spec.checks:
        session.run_check(spec, check, model)
    written = write_reports(session, str(tmp_path_factory.mktemp("readability-reports")) + "/")
    texts = {path.name: path.read_text(encoding="utf-8") for path in written}
    main = next(text for name, text in texts.items() if "tiny-report" in name)
    extra = next(text for name, text in texts.items() if "tiny-extra" in name)
    return main, extra


def _figures(page: str) -> list[dict]:
    return [json.loads(text) for text in re.findall(r'<script type="application/json" id="fig-data-\d+">(.*?)</script>', page, re.S)]


def _sections(page: str) -> list[str]:
    return re.findall(r'<details class="property.*?</details>', page, re.S)


def test_log_axes_write_full_tick_labels(pages):
    axes = [axis for fig in _figures(pages[0]) for key, axis in fig["layout"].items() if key.startswith("yaxis") and axis.get("type") == "log"]
    assert axes
    assert all(axis.get("tickformat") for axis in axes)  # without one plotly writes 20 as a small "2"


def test_no_figure_draws_more_than_three_lines_on_one_axes(pages):
    for fig in _figures(pages[0]):
        lines: dict[str, int] = {}
        for trace in fig["data"]:
            if trace.get("type", "scatter") == "scatter" and trace.get("mode") == "lines":
                lines[trace.get("yaxis", "y")] = lines.get(trace.get("yaxis", "y"), 0) + 1
        assert max(lines.values(), default=0) <= 3, fig["layout"].get("title")


def test_a_section_holds_no_figure_twice(pages):
    for page in pages:
        for section in _sections(page):
            datas = [json.dumps(json.loads(text)["data"], sort_keys=True)
                     for text in re.findall(r'<script type="application/json" id="fig-data-\d+">(.*?)</script>', section, re.S)]
            assert len(datas) == len(set(datas))


def test_overview_figure_is_outside_the_collapsed_sections(pages):
    main, extra = pages
    overview = extra.split('<section id="properties">')[0]
    assert 'id="overview"' in overview and "Every check at a glance" in overview
    assert 'class="status passed"' in overview


def test_undefined_onset_is_explained(pages):
    _, extra = pages
    assert "no block exceeded the threshold" in extra
