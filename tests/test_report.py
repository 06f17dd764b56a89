"""The HTML report: structure, self-containment, size, file placement and escaping of model-supplied text."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from plotly.offline import get_plotlyjs
from tiny import save_tiny
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from geomcheck.report import report_paths, write_reports
from geomcheck.report.html import script_json
from geomcheck.runner import GeomSession
from geomcheck.spec.schema import load_spec

MAX_REPORT_BYTES = 10_000_000
MALICIOUS = (
    "<script>alert(1)</script>",
    "</div>",
    "<script>document.title='pwned'</script>",
    "<img/src=x/onerror=document.title='pwned'>",
    "</script><b>bold</b>",
    "&amp;lt;",
)
REASON = "<script>document.title='pwned-by-reason'</script> Ning & Rangaraju, fig. 3"
SPEC = """\
name: tiny-report
description: report fixture; <b>not bold</b>
inputs:
  mode: text
  source: text.txt
  sequences: 12
  tokens: 40
  seed: 3
checks:
  - id: separation
    property: attn_mlp_separation
    params: {{max_points: 1200}}
    expect: {{min: 0.0}}
  - id: first_token
    property: first_position_norm
    expect: {{min: 1000}}
    reason: "{reason}"
  - id: first_token_per_layer
    property: first_position_norm
    expect: {{on: per_layer, max: 1.0e9}}
  - id: helix
    property: positional_helix
    params: {{max_positions: 64}}
    expect: {{max: 1.0}}
  - id: structure
    property: sequence_structure
    params: {{early_positions: 4}}
    expect: {{on: per_layer, min: -1.0e6}}
  - id: growth
    property: layer_norm_growth
    expect: {{min: 0.0}}
  - id: rank
    property: effective_rank
    expect: {{on: per_layer, min: 1.0}}
  - id: repeated
    property: repeated_token_convergence
    inputs: {{mode: repeated_token, sequences: 6, tokens: 24}}
    expect: {{between: [-1.0, 1.0]}}
  - id: repeated_on_text
    property: repeated_token_convergence
    expect: {{min: 0.0}}
"""
STATUSES = {
    "separation": "passed", "first_token": "failed", "first_token_per_layer": "passed", "helix": "passed",
    "structure": "passed", "growth": "passed", "rank": "passed", "repeated": "passed", "repeated_on_text": "skipped",
}


def malicious_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer whose words include strings that are live HTML if a report forgets to escape."""
    words = [f"w{i}" for i in range(200)] + list(MALICIOUS)
    vocab = {token: i for i, token in enumerate(["<unk>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def run_fixture_session(root: Path) -> GeomSession:
    """A real session: tiny random GPT-2 with the HTML vocabulary, every property, one failing and one skipped check."""
    model_dir = save_tiny(root / "tiny-gpt2", "gpt2")
    malicious_tokenizer().save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(200)]
    # Every 40-token chunk holds every HTML token, so whichever chunk comes first in the report shows them.
    chunks = [rng.permutation([*MALICIOUS, *rng.choice(words, size=40 - len(MALICIOUS))]) for _ in range(100)]
    (root / "text.txt").write_text(" ".join(" ".join(chunk) for chunk in chunks))
    (root / "pyproject.toml").write_text("[project]\nname = 'fixture'\n")
    spec_path = root / "tiny.yaml"
    spec_path.write_text(SPEC.format(reason=REASON))
    spec = load_spec(spec_path)
    session = GeomSession()
    for check in spec.checks:
        session.run_check(spec, check, str(model_dir))
    return session


@pytest.fixture(scope="module")
def fixture_session(tmp_path_factory) -> GeomSession:
    return run_fixture_session(tmp_path_factory.mktemp("report-project"))


@pytest.fixture(scope="module")
def report(fixture_session, tmp_path_factory) -> Path:
    # input_text: the tokens planted in the text inputs must reach the page, to show they arrive escaped.
    (path,) = write_reports(fixture_session, str(tmp_path_factory.mktemp("report") / "tiny.html"), umap=True, input_text=True)
    return path


@pytest.fixture(scope="module")
def page(report) -> str:
    return report.read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Start and end tags with attributes, and the text inside elements with given classes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.starts: list[tuple[str, dict]] = []
        self.ends: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        self.ends.append(tag)
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


@pytest.fixture(scope="module")
def tags(page) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def figure_specs(tags: _Tags) -> dict[str, dict]:
    return {attrs["id"]: json.loads(text) for attrs, text in tags.scripts if attrs.get("id", "").startswith("fig-data-")}


def _length(values) -> int:
    if isinstance(values, dict) and "bdata" in values:
        itemsize = np.dtype(values["dtype"]).itemsize
        return len(base64.b64decode(values["bdata"])) // itemsize
    return len([v for v in values if v is not None]) if isinstance(values, list) else 0


def _all_text(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _all_text(v)]
    if isinstance(value, list):
        return [t for v in value for t in _all_text(v)]
    return []


def test_every_check_is_in_the_table_with_its_status(fixture_session, tags):
    rows = {a["data-check"]: a["data-status"] for tag, a in tags.starts if tag == "tr" and "data-check" in a}
    assert rows == STATUSES
    assert {r.check.id: r.outcome.status for r in fixture_session.results} == STATUSES


def test_header_names_model_inputs_and_versions(page, fixture_session):
    (ref,) = fixture_session.models()
    assert ref in page
    for word in ("hidden_size", "position_scheme", "learned", "12 × 40 tokens",
                 "BOS prepended", "seed", "torch", "transformers", "numpy", "plotly", "geomcheck", "wall time"):
        assert word in page, word


def test_every_figure_container_has_data(tags):
    containers = [a for tag, a in tags.starts if tag == "div" and "geom-figure" in a.get("class", "").split()]
    specs = figure_specs(tags)
    assert len(containers) >= 15
    assert {c["data-source"] for c in containers} == set(specs)
    assert len({c["id"] for c in containers}) == len(containers)
    for data_id, spec in specs.items():
        assert spec["data"], data_id
        points = sum(max(_length(t.get(axis, [])) for axis in ("x", "y", "z")) for t in spec["data"])
        assert points > 0, data_id
        assert "template" not in spec["layout"]


def test_each_property_has_its_plots(tags):
    titles = [a.get("aria-label", "") for tag, a in tags.starts if tag == "div" and "geom-figure" in a.get("class", "")]
    for expected in ("What the check measured: the probe in the top 8 PCs", "UMAP of the probe's space", "Norm by position",
                     "Position 0 vs the rest, by block", "Positions in their top principal components", "Components vs position",
                     "Per-position means in PCA", "Norm by block", "Similarity to the reference position",
                     "first_token: ratio (judged on its aggregate)", "Every check at a glance"):
        assert expected in titles, expected


def test_the_umap_view_is_drawn_only_on_request(fixture_session, tmp_path):
    (path,) = write_reports(fixture_session, str(tmp_path / "plain.html"))
    text = path.read_text(encoding="utf-8")
    assert "What the check measured: the probe in the top 8 PCs" in text
    assert "UMAP of the probe" not in text


def test_figures_stay_small(tags):
    for data_id, spec in figure_specs(tags).items():
        for trace in spec["data"]:
            for axis in ("x", "y", "z"):
                value = trace.get(axis)
                assert _length(value or []) <= 10_000, data_id
                if isinstance(value, dict) and value["dtype"].startswith("f"):
                    assert value["dtype"] == "f4", (data_id, axis)


def test_plotly_is_inlined_once_and_nothing_is_fetched(page, tags):
    assert page.count(get_plotlyjs()[:500]) == 1
    assert page.count("Plotly.newPlot(") == 1
    assert not [a for tag, a in tags.starts if tag in ("script", "img", "iframe") and "src" in a]
    assert not [a for tag, a in tags.starts if tag == "link"]
    assert "MathJax.Hub" not in page.replace(get_plotlyjs(), "")
    assert "default-src 'none'" in page


def test_report_size(report, page):
    assert report.stat().st_size < MAX_REPORT_BYTES
    assert len(page.replace(get_plotlyjs(), "").encode()) < 2_000_000


def test_failing_check_section_opens_and_says_what_went_wrong(tags, page, fixture_session):
    details = {a["id"]: a for tag, a in tags.starts if tag == "details"}
    assert "open" in details["property-first_position_norm"]
    assert "open" not in details["property-layer_norm_growth"]
    failed = next(r for r in fixture_session.results if r.outcome.status == "failed")
    from markupsafe import escape

    assert str(escape(failed.outcome.headline)) in page
    for line in failed.outcome.details:
        assert str(escape(line)) in page


def test_html_from_tokens_and_specs_stays_text(page, tags):
    executable = [text for attrs, text in tags.scripts if attrs.get("type") is None]
    assert len(executable) == 2  # plotly.js and the page's own runtime
    assert [t for t, a in tags.starts if t == "img"] == []
    assert [t for t, a in tags.starts if t == "b"] == []
    assert tags.ends.count("div") == sum(1 for t, _ in tags.starts if t == "div")
    for token in MALICIOUS:
        assert repr(token) not in page  # how the report shows a token, were it not escaped
        assert token == "</div>" or token not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the first sequence's tokens, as text
    assert "&lt;script&gt;document.title=&#39;pwned-by-reason&#39;&lt;/script&gt;" in page
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    hovers = [t for spec in figure_specs(tags).values() for trace in spec["data"] for t in _all_text(trace.get("hovertext", []))]
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in h for h in hovers)
    assert not any("<script" in h or "</div" in h for h in hovers)


def test_script_json_cannot_close_its_element():
    text = script_json({"token": "</script><!-- & \u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"token": "</script><!-- & \u2028"}


def test_report_paths(fixture_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (pair,) = report_paths(fixture_session, None).items()
    assert pair[1] == Path("reports/tiny-gpt2-tiny-report.html")
    assert list(report_paths(fixture_session, "out/r.html").values()) == [Path("out/r.html")]
    (tmp_path / "folder").mkdir()
    assert list(report_paths(fixture_session, "folder").values()) == [Path("folder/tiny-gpt2-tiny-report.html")]
    assert list(report_paths(fixture_session, "new/").values()) == [Path("new/tiny-gpt2-tiny-report.html")]
    twin = GeomSession(results=[*fixture_session.results, *(dataclasses.replace(r, model="random:gpt2") for r in fixture_session.results)])
    assert sorted(report_paths(twin, "out/r.html").values()) == [Path("out/r-random-gpt2-tiny-report.html"), Path("out/r-tiny-gpt2-tiny-report.html")]
    assert sorted(report_paths(twin, "many").values()) == [Path("many/random-gpt2-tiny-report.html"), Path("many/tiny-gpt2-tiny-report.html")]


def test_write_reports_is_atomic_and_can_be_disabled(fixture_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert write_reports(fixture_session, "none") == []
    assert not (tmp_path / "reports").exists()
    target = tmp_path / "r.html"
    target.write_text("old")
    assert write_reports(fixture_session, str(target)) == [target]
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_report_without_kept_activations_still_renders(fixture_session, tmp_path):
    bare = GeomSession(results=list(fixture_session.results))
    (path,) = write_reports(bare, str(tmp_path / "bare.html"))
    page = path.read_text(encoding="utf-8")
    assert "activations were not kept" in page
    assert re.search(r'<details class="property failed" id="property-first_position_norm"[^>]* open>', page)
