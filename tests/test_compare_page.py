"""The compare page reads right (issue #15): the paired test's rows per check, A and B named as such, NaN kept."""

from __future__ import annotations

import dataclasses
import json
import re

from test_compare import SPEC, EVIL_REASON, pair  # noqa: F401  (pair is a fixture)

from geomcheck import properties
from geomcheck.compare_run import compare
from geomcheck.gate.compare import CheckComparison
from geomcheck.report.compare_html import _overlay, render_compare
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import parse_spec


def _comparison(pair, tmp_path):  # noqa: F811
    path = tmp_path / "tiny-compare.yaml"
    path.write_text(SPEC.format(bound=1.0e9, reason=EVIL_REASON.replace('"', '\\"')))
    spec = parse_spec(path.read_text(), path)
    session = GeomSession()
    return session, compare(session, [spec], str(pair[0]), str(pair[1]))


def test_each_check_lists_its_own_metric_with_a_b_change_se_and_effect(pair, tmp_path):  # noqa: F811
    session, comparison = _comparison(pair, tmp_path)
    page = render_compare(session, comparison)
    sections = dict(re.findall(r'<details class="check[^"]*" id="(check-\d+)".*?(<table class="drift.*?</table>)', page, re.S))
    assert sections
    for index, row in enumerate(comparison.rows):
        table = sections.get(f"check-{index}")
        if table is None:
            continue
        header = re.sub(r"<[^>]+>", "|", table.split("</thead>")[0])
        for column in ("A", "B", "change B − A", "paired SE", "effect (SE) or floor"):
            assert f"|{column}|" in header, column
        wheres = re.findall(r"<tr[^>]*><td>([^<]+)</td>", table)
        # Its own gated metric, and the blocks of its property's profile metrics that moved past their floors.
        profile = {spec.name for spec in properties.get(row.check.property).metric_specs if spec.paired_floor is not None and spec.per_layer}
        own = [where for where in wheres if where.startswith(row.check.metric + " ")]
        assert own and all(where.split(" ")[0] in profile | {row.check.metric} for where in wheres), wheres
    drift_part = page.split('<section id="checks">')[1]
    assert "baseline" not in drift_part.split('<section id="environment">')[0]


def test_a_single_value_chart_keeps_b_when_it_is_nan(pair, tmp_path):  # noqa: F811
    _, comparison = _comparison(pair, tmp_path)
    row = next(r for r in comparison.rows if not any(_per_layer(r)))
    metric = row.b.measurement.metrics[row.check.metric]
    nan_metric = dataclasses.replace(metric, aggregate=float("nan"), per_layer={})
    b_measurement = dataclasses.replace(row.b.measurement, metrics={**row.b.measurement.metrics, row.check.metric: nan_metric})
    a_metric = dataclasses.replace(row.a.measurement.metrics[row.check.metric], per_layer={})
    a_measurement = dataclasses.replace(row.a.measurement, metrics={**row.a.measurement.metrics, row.check.metric: a_metric})
    broken = CheckComparison(row.spec, row.check, dataclasses.replace(row.a, measurement=a_measurement),
                             dataclasses.replace(row.b, measurement=b_measurement), (), None)
    figure = _overlay(broken, comparison)
    spec = json.loads(figure.figure.to_json())
    (bar,) = [t for t in spec["data"] if t["type"] == "bar"]
    assert len(bar["x"]) == 2 and bar["x"][1].startswith("B:")
    assert any("not defined" in a.get("text", "") for a in spec["layout"].get("annotations", []))


def _per_layer(row):
    metric = row.a.measurement.metrics.get(row.check.metric)
    return metric.per_layer if metric is not None else {}
