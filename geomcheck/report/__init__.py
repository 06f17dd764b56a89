"""HTML reports: one self-contained file per (model, spec) that a session ran, written atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from geomcheck.paths import confined, refuse_linked_default, safe_component, write_atomically

if TYPE_CHECKING:
    from geomcheck.gate.results import CheckResult, SessionView

DEFAULT_DIRECTORY = Path("reports")
DISABLED = "none"


def _safe(text: str) -> str:
    return safe_component(text, "spec")


def _model_key(session: SessionView, model: str) -> str:
    from geomcheck.errors import GeomcheckError
    from geomcheck.models.loader import resolve

    loaded = session.models().get(model)
    if loaded is not None:
        return loaded.ref.key
    try:
        return resolve(model).key
    except GeomcheckError:
        return _safe(model)


def groups(session: SessionView) -> dict[tuple[str, Path], list[CheckResult]]:
    """The session's results by (model reference, spec path), in the order they ran."""
    grouped: dict[tuple[str, Path], list[CheckResult]] = {}
    for result in session.results:
        grouped.setdefault((result.model, result.spec.path), []).append(result)
    return grouped


def report_paths(session: SessionView, report: str | None) -> dict[tuple[str, Path], Path]:
    """Where each (model, spec) report goes.

    ``None``: ``reports/<model key>-<spec name>.html``. A path with one (model, spec) pair: that file,
    unless it is an existing folder or ends in a separator. Several pairs: a ``.html`` path becomes
    ``<stem>-<model key>-<spec name>.html`` beside it; anything else is a folder for the default names.
    """
    pairs = groups(session)
    names: dict[tuple[str, Path], str] = {}
    for model, spec_path in pairs:
        spec = pairs[(model, spec_path)][0].spec
        names[(model, spec_path)] = f"{_model_key(session, model)}-{_safe(spec.name)}"
    target = Path(report) if report else None
    if target is None:
        refuse_linked_default(DEFAULT_DIRECTORY, "--report (pytest: --geom-report)")
    as_folder = target is None or target.is_dir() or str(report).endswith(("/", os.sep))
    paths: dict[tuple[str, Path], Path] = {}
    taken: set[Path] = set()
    for pair, name in names.items():
        if as_folder:  # names built from specs and model references stay inside the report folder
            path = confined(target or DEFAULT_DIRECTORY, f"{name}.html")
        elif len(names) == 1:
            path = target
        elif target.suffix.lower() in (".html", ".htm"):
            path = target.with_name(f"{target.stem}-{name}{target.suffix}")
        else:
            path = confined(target, f"{name}.html")
        stem, count = path.stem, 1
        while path in taken:  # two specs with one name in different folders
            count += 1
            path = path.with_name(f"{stem}-{count}{path.suffix}")
        taken.add(path)
        paths[pair] = path
    return paths


def write_reports(session: SessionView, report: str | None, *, umap: bool = False, input_text: bool = False) -> list[Path]:
    """Write one HTML report per (model, spec) in ``session.results``; returns the paths written.

    ``report`` is a file or folder (see ``report_paths``); ``"none"`` writes nothing. ``umap`` adds the UMAP
    view of the attention/MLP separation (off by default: numba compiles it for about 10 s per process).
    ``input_text`` shows the tokens of text and dataset inputs in hovers; off by default, because those
    files come with the repository under test and a report is published (see report.html.shown_tokens).
    """
    if report is not None and str(report).strip().lower() == DISABLED:
        return []
    from geomcheck.properties.threads import one_blas_thread
    from geomcheck.report.html import render_report

    pairs = groups(session)
    written = []
    for pair, path in report_paths(session, report).items():
        model, _ = pair
        results: Sequence[CheckResult] = pairs[pair]
        if all(result.outcome.status == "skipped" for result in results):
            continue  # a spec that does not apply to this model: the run says why; an empty page would not
        with one_blas_thread():  # the figures' PCAs and probes: small linear algebra (geomcheck.properties.threads)
            page = render_report(session, model, results[0].spec, results, umap=umap, input_text=input_text)
        write_atomically(path, page)
        written.append(path)
    return written


__all__ = ["report_paths", "write_reports"]
