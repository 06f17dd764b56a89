"""The HTML report in a real browser: headless Chromium, offline, from disk.

Needs Chromium (``apt-get install -y chromium``); skipped with that hint when it is absent. The
screenshot of the last run is kept at reports/browser-check.png.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_check import ALERT_TITLE, band_contradictions, find_chromium, open_report
from test_report import MALICIOUS, run_fixture_session

from geomcheck.report import write_reports

SCREENSHOT = Path(__file__).resolve().parent.parent / "reports" / "browser-check.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_chromium() is None, reason="needs headless Chromium: apt-get install -y chromium"),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    session = run_fixture_session(tmp_path_factory.mktemp("browser-project"))
    # input_text: the planted tokens of the text inputs must reach the page, to show the browser renders them as text.
    (report,) = write_reports(session, str(tmp_path_factory.mktemp("browser-report") / "tiny.html"), input_text=True)
    return report, open_report(report, screenshot=SCREENSHOT)


def test_page_runs_without_errors_or_requests(rendered):
    report, result = rendered
    summary = result.summary
    assert summary["errors"] == []
    assert summary["resources"] == []
    assert summary["pageRendered"] == "true"


def test_every_figure_is_drawn(rendered):
    _, result = rendered
    assert len(result.figures) >= 15
    for figure in result.figures:
        assert figure["rendered"] and figure["error"] is None, figure
        assert figure["svgs"] >= 1 and figure["traces"] >= 1, figure
    assert result.dom.count('class="geom-figure js-plotly-plot"') == len(result.figures)
    assert any(figure["gl"] for figure in result.figures)  # the WebGL scatters and the 3-D helix drew too


def test_injected_html_stays_text(rendered):
    report, result = rendered
    summary = result.summary
    title = re.search(r"<title>(.*?)</title>", report.read_text(encoding="utf-8"), re.S).group(1)
    assert not summary["alerted"]
    assert summary["title"] not in (ALERT_TITLE, "pwned", "pwned-by-reason")
    assert summary["title"] == title.replace("&amp;", "&")
    assert summary["scripts"].count("text/javascript") == 3  # the probe, plotly.js and the page runtime
    assert summary["images"] == 0 and summary["bold"] == 0
    for token in MALICIOUS:  # long tokens are shown cut, with an ellipsis
        assert any(shown.rstrip("…") == repr(token)[: len(shown.rstrip("…"))] for shown in summary["tokens"]), token
    assert "&lt;script&gt;document.title='pwned-by-reason'&lt;/script&gt;" in result.dom


def test_screenshot_is_kept(rendered):
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 10_000


def test_no_value_contradicts_its_band(rendered):
    """The fixture fails first_token on its aggregate while its per-block ratios sit anywhere: no band may sit behind them."""
    _, result = rendered
    banded = [figure for figure in result.figures if figure["bands"]]
    assert len(banded) >= 5  # every check's metric figure, and the overview panels
    assert any(series["meta"] and any(series["meta"].get("failing", [])) for figure in banded for series in figure["series"])
    judged = [series for figure in banded for series in figure["series"] if series["meta"] and series["meta"].get("judged")]
    assert all(len(series["y"]) == len(series["meta"]["failing"]) > 0 for series in judged)  # the values were read
    assert band_contradictions(result.figures) == []
