"""Open a geomcheck HTML report in headless Chromium, offline, and say what rendered and what went wrong.

Used by tests/test_report_browser.py; also runnable by hand:
``python tests/browser_check.py reports/x.html --screenshot reports/browser-check.png``.

The report is copied with a probe script inserted first in <head>. The probe records page errors,
console errors, any resource the page fetched and whether alert() ran, and writes a JSON summary
(per figure: rendered flag and plotly's SVG count) into an attribute of <html> that
``--dump-dom`` prints. The network is cut by resolving every host to nothing and by a dead proxy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SUMMARY_ATTRIBUTE = "data-browser-check"
ALERT_TITLE = "ALERT-RAN"

PROBE = """<script>
(function () {
  "use strict";
  var errors = [], alerted = false;
  function text(value) { try { return value && value.stack ? String(value.stack) : String(value); } catch (e) { return "?"; } }
  window.addEventListener("error", function (e) { errors.push("error: " + (e.message || text(e.error) || (e.target && e.target.outerHTML))); }, true);
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + text(e.reason)); });
  var consoleError = console.error;
  console.error = function () { errors.push("console.error: " + Array.prototype.map.call(arguments, text).join(" ")); return consoleError.apply(console, arguments); };
  window.alert = function () { alerted = true; document.title = "%(alert_title)s"; };
  function summary() {
    var figures = Array.prototype.map.call(document.querySelectorAll(".geom-figure"), function (el) {
      return { id: el.id, rendered: el.getAttribute("data-rendered") === "true", error: el.getAttribute("data-error"),
               svgs: el.querySelectorAll(".main-svg").length, traces: el.data ? el.data.length : 0,
               points: (el.data || []).reduce(function (n, t) { var v = t.x || t.y || t.z || []; return n + (v.length || 0); }, 0),
               gl: el.querySelectorAll("canvas").length,
               bands: ((el.layout && el.layout.shapes) || []).filter(function (s) { return s.name === "pass band" || (s.type === "rect" && s.fillcolor === "#2e7d32"); })
                 .map(function (s) { return { yref: s.yref, y0: s.y0, y1: s.y1 }; }),
               // _fullData holds the decoded values (data may still hold plotly's base64 typed-array spec).
               series: (el._fullData || []).filter(function (t) { return t.meta || (t.y && t.y.length <= 500); }).map(function (t) {
                 return { name: t.name || null, type: t.type || "scatter", yaxis: t.yaxis || "y", meta: t.meta || null,
                          y: t.y && t.y.length !== undefined ? Array.prototype.slice.call(t.y) : [] }; }) };
    });
    var scripts = Array.prototype.map.call(document.scripts, function (s) { return s.type || "text/javascript"; });
    var tokens = Array.prototype.map.call(document.querySelectorAll(".tokens span"), function (s) { return s.textContent; });
    var resources = performance.getEntriesByType("resource").map(function (r) { return r.name; });
    document.documentElement.setAttribute("%(attribute)s", JSON.stringify({
      errors: errors, alerted: alerted, title: document.title, figures: figures, scripts: scripts, tokens: tokens,
      resources: resources, pageRendered: document.body ? document.body.getAttribute("data-rendered") : null,
      images: document.images.length, bold: document.querySelectorAll("b").length,
      headlines: Array.prototype.map.call(document.querySelectorAll(".outcome .headline"), function (h) { return h.textContent; })
    }));
  }
  setInterval(summary, 250);
  window.addEventListener("load", function () { setTimeout(summary, 0); });
})();
</script>""" % {"alert_title": ALERT_TITLE, "attribute": SUMMARY_ATTRIBUTE}


@dataclass(frozen=True)
class BrowserResult:
    """What the page did: the probe's summary, plus the dumped DOM and Chromium's own stderr."""

    summary: dict
    dom: str
    stderr: str

    @property
    def figures(self) -> list[dict]:
        return self.summary["figures"]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def instrument(report_html: str) -> str:
    """The report with the probe as the first element of <head>, so it sees every later error."""
    head = report_html.index("<head>") + len("<head>")
    return report_html[:head] + PROBE + report_html[head:]


def _flags(profile: Path) -> list[str]:
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        # WebGL (scattergl, scatter3d) through the software rasteriser.
        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        # No network: every host resolves to nothing and any proxied request goes nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    ]


def open_report(report: Path, *, chromium: str | None = None, budget_ms: int = 20000, screenshot: Path | None = None,
                window: tuple[int, int] = (1280, 4000), timeout_s: float = 180) -> BrowserResult:
    """Load an instrumented copy of ``report`` from disk and return the probe's summary after ``budget_ms`` of virtual time."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="geomcheck-browser-") as folder:
        work = Path(folder)
        page = work / report.name
        page.write_text(instrument(report.read_text(encoding="utf-8")), encoding="utf-8")
        base = [chromium, *_flags(work / "profile"), f"--virtual-time-budget={budget_ms}"]
        done = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=timeout_s)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([*base, f"--screenshot={screenshot.resolve()}", f"--window-size={window[0]},{window[1]}",
                            "--hide-scrollbars", page.as_uri()], capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not done.stdout:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return BrowserResult(_summary(done.stdout), done.stdout, done.stderr)


class _RootAttribute(HTMLParser):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.value: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html" and self.value is None:
            self.value = dict(attrs).get(self.name)


def _summary(dom: str) -> dict:
    parser = _RootAttribute(SUMMARY_ATTRIBUTE)
    parser.feed(dom[: dom.index(">", dom.index("<html")) + 1])
    if parser.value is None:
        raise RuntimeError("the probe wrote no summary: the page's scripts did not run")
    return json.loads(parser.value)


def band_contradictions(figures: list[dict]) -> list[str]:
    """Where a figure's pass band disagrees with the verdict, read from the data the browser drew.

    Every trace on axes with a band must be one the check judges (trace ``meta.judged``), and each of its
    values must sit inside the band exactly when the check does not count it as failing.
    """
    found = []
    for figure in figures:
        for band in figure.get("bands", []):
            axis = str(band["yref"]).replace(" domain", "")
            low, high = sorted((float(band["y0"]), float(band["y1"])))
            for series in figure.get("series", []):
                if series["yaxis"] != axis or series["type"] not in ("scatter", "scattergl", "bar"):
                    continue
                meta = series["meta"] or {}
                if not meta.get("judged"):
                    found.append(f"{figure['id']}: {series['name']!r} is not judged but drawn over the pass band")
                    continue
                for value, failing in zip(series["y"], meta.get("failing", [])):
                    if value is None:
                        continue
                    inside = low <= float(value) <= high
                    if inside == bool(failing):
                        found.append(f"{figure['id']}: {series['name']!r} value {value:.4g} is {'inside' if inside else 'outside'} "
                                     f"the band [{low:.4g}, {high:.4g}] but {'fails' if failing else 'passes'}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--budget-ms", type=int, default=20000)
    args = parser.parse_args(argv)
    result = open_report(args.report, budget_ms=args.budget_ms, screenshot=args.screenshot)
    summary = result.summary
    bad = [f for f in summary["figures"] if not f["rendered"] or not f["svgs"]]
    print(json.dumps({k: v for k, v in summary.items() if k != "figures"}, indent=1))
    print(f"{len(summary['figures']) - len(bad)} of {len(summary['figures'])} figures rendered")
    for figure in bad:
        print(f"not rendered: {figure}")
    contradictions = band_contradictions(summary["figures"])
    for line in contradictions:
        print(f"band contradicts the verdict: {line}")
    return 1 if bad or contradictions or summary["errors"] or summary["alerted"] else 0


if __name__ == "__main__":
    sys.exit(main())
