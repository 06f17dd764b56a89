"""Writes the HTML report at the end of a pytest session that ran geometry checks."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pytest

from geomcheck.pytest_plugin.plugin import SESSION_KEY, setting


class ReportWriter:
    """Registered only when a model is named; writes in pytest_sessionfinish like junitxml does."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.paths: list[str] = []

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        geom = self.config.stash.get(SESSION_KEY, None)
        if geom is None or not geom.results:
            return
        from geomcheck.report import write_reports

        umap = bool(self.config.getoption("geom_umap") or self.config.getini("geom_umap"))
        input_text = bool(self.config.getoption("geom_report_input_text"))
        self.paths = [str(p) for p in write_reports(geom, setting(self.config, "geom_report"), umap=umap, input_text=input_text)]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for path in self.paths:
            terminalreporter.write_line(f"geomcheck report: {path}")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list, summary: list, postfix: list, session: pytest.Session) -> None:
        """With pytest-html installed, its report links to ours; the hook is simply unused without it."""
        if not self.paths:
            return
        html_path = self.config.getoption("htmlpath", None)
        base = Path(os.path.expandvars(html_path)).expanduser().resolve().parent if html_path else Path.cwd()
        for path in self.paths:
            href = Path(os.path.relpath(Path(path).resolve(), base)).as_posix()
            prefix.append(f'<p>geomcheck report: <a href="{html.escape(href)}">{html.escape(path)}</a></p>')
