"""``geomcheck suggest``: a spec calibrated on one model against its random twin, confirmed on other inputs.

Starting a spec for a new model by hand means copying thresholds that encode someone else's models.
Here each check of a template spec (default: the shipped decoder spec) is measured on the model and
on its twin, twice: on the template's inputs (the *fit* draw) and on a disjoint draw of the same kind
of inputs (the *confirm* draw: no sequence in common). The bound is fitted on the fit draw
(``spec.bounds.fit_bound``: between the two, ``z`` standard errors of room on each side) and kept
only if, on the confirm draw, the model still passes and the twin still fails. Every kept check's
``reason`` states the numbers it came from; every dropped check is printed with why.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from geomcheck.errors import GeomcheckError
from geomcheck.exit_codes import ExitCode
from geomcheck.models.loader import LoadOptions
from geomcheck.models.refs import RANDOM_PREFIX, resolve
from geomcheck.runner import DEFAULT_TOKEN_BUDGET, GeomSession
from geomcheck.spec.bounds import Fit, Judged, fit_bound, judged, margin_in_se, side
from geomcheck.spec.expect import evaluate
from geomcheck.spec.schema import Check, Spec

DEFAULT_Z = 3.0


@dataclass(frozen=True)
class SuggestOptions:
    model: str
    out: Path
    twin: str | None = None  # default: random:MODEL
    specs: tuple[str, ...] = ("builtin:decoder",)
    z: float = DEFAULT_Z
    load: LoadOptions = field(default_factory=LoadOptions)
    token_budget: int | None = None
    batch_size: int = 8

    @property
    def twin_ref(self) -> str:
        return self.twin or f"{RANDOM_PREFIX}{self.model.removeprefix(RANDOM_PREFIX)}"


@dataclass(frozen=True)
class Suggestion:
    """One template check: its fitted bound and the four values it rests on, or why it was dropped."""

    spec: Spec
    check: Check
    fitted: Check | None  # the check with the fitted bound; None: dropped
    why: str  # the dropped check's reason, or the kept check's written reason
    values: dict[str, Judged | None] = field(default_factory=dict)  # "model fit", "twin fit", "model confirm", "twin confirm"


def suggest(options: SuggestOptions, specs: list[Spec], progress=print) -> list[Suggestion]:
    """Fit and confirm every check of ``specs`` on the model against its twin."""
    fit_session = GeomSession(options.load, options.token_budget or DEFAULT_TOKEN_BUDGET, batch_size=options.batch_size)
    confirm_session = GeomSession(options.load, options.token_budget or DEFAULT_TOKEN_BUDGET, batch_size=options.batch_size,
                                  input_draw=1)
    model, twin = options.model, options.twin_ref
    for ref in (model, twin):
        confirm_session.add_model(ref, fit_session.model(ref))  # loaded once, measured on both draws
    # The template's applies_to named the models it was written for; the suggested spec is for this one.
    specs = [spec.model_copy(update={"applies_to": None}) for spec in specs]
    for session in (fit_session, confirm_session):
        session.plan((spec, check) for spec in specs for check in spec.checks)
    suggestions = []
    for spec in specs:
        for check in spec.checks:
            suggestion = _one(options, spec, check, fit_session, confirm_session)
            suggestions.append(suggestion)
            progress(("kept    " if suggestion.fitted is not None else "dropped ") + f"{spec.display_path}::{check.id}: "
                     + (_condition(suggestion.fitted) if suggestion.fitted is not None else suggestion.why))
    return suggestions


def _one(options: SuggestOptions, spec: Spec, check: Check, fit_session: GeomSession, confirm_session: GeomSession) -> Suggestion:
    direction = side(check)
    if direction is None:
        return Suggestion(spec, check, None, "a range bound (between, or min with max) is not fitted; copy it by hand if it applies")
    model, twin = options.model, options.twin_ref
    values: dict[str, Judged | None] = {}
    for label, session in (("fit", fit_session), ("confirm", confirm_session)):
        for who, ref in (("model", model), ("twin", twin)):
            result = session.run_check(spec, check, ref)
            if result.outcome.status in ("skipped", "error"):
                return Suggestion(spec, check, None, f"{result.outcome.status} on {ref}: {result.outcome.headline}", values)
            values[f"{who} {label}"] = judged(check, result.measurement, direction)
    if values["model fit"] is None:
        return Suggestion(spec, check, None, f"{model} gave no value for {check.metric}", values)
    twins = [values["twin fit"]] if values["twin fit"] is not None else []
    fit = fit_bound(direction, [values["model fit"]], twins, options.z, prior=getattr(check.expect, direction))
    if fit.bound is None:
        return Suggestion(spec, check, None, f"does not separate the model from its twin: {fit.why}", values)
    fitted = check.model_copy(update={"expect": check.expect.model_copy(update={direction: fit.bound})})
    confirmed = {who: evaluate(fitted, result.measurement, model=ref).status
                 for who, ref, result in (("model", model, confirm_session.run_check(spec, check, model)),
                                          ("twin", twin, confirm_session.run_check(spec, check, twin)))}
    if confirmed["model"] != "passed" or confirmed["twin"] == "passed":
        return Suggestion(spec, check, None, (
            f"the fitted bound {_condition(fitted)} did not hold on the confirmation inputs: model "
            f"{_text(values['model confirm'])} {confirmed['model']}, twin {_text(values['twin confirm'])} {confirmed['twin']}"), values)
    reason = _reason(options, fitted, fit, values)
    return Suggestion(spec, check, fitted.model_copy(update={"reason": reason}), reason, values)


def _text(value: Judged | None) -> str:
    return "no value" if value is None else value.text()


def _condition(check: Check) -> str:
    mostly = f" in ≥ {check.expect.mostly:.0%} of blocks" if check.expect.mostly else (" in every block" if check.expect.on == "per_layer" else "")
    return f"{check.metric} {check.expect.condition()}{mostly}"


def _margins(fit: Fit, model: Judged | None, twin: Judged | None) -> str:
    parts = []
    for who, value in (("model", model), ("twin", twin)):
        if value is None or not math.isfinite(value.value):
            parts.append(f"{who}: no finite value (fails any bound)" if who == "twin" else f"{who}: no value")
            continue
        margin = margin_in_se(fit, value)
        shown = "no SE" if math.isinf(margin) else f"{abs(margin):.1f} SE"
        parts.append(f"{who} {shown} {'inside' if (margin > 0) == (who == 'model') else 'outside'}")
    return ", ".join(parts)


def _reason(options: SuggestOptions, fitted: Check, fit: Fit, values: dict[str, Judged | None]) -> str:
    return (
        f"Fitted by geomcheck suggest: {options.model} {_text(values['model fit'])} vs its twin {options.twin_ref} "
        f"{_text(values['twin fit'])} on the fit inputs; the bound sits between them with {options.z:g} SEs of room on "
        f"each side ({_margins(fit, values['model fit'], values['twin fit'])}). On a disjoint draw of inputs: "
        f"model {_text(values['model confirm'])}, twin {_text(values['twin confirm'])} "
        f"({_margins(fit, values['model confirm'], values['twin confirm'])})."
    )


def spec_text(options: SuggestOptions, suggestions: list[Suggestion]) -> str:
    """The suggested spec as YAML: the kept checks, each with its inputs written out, and a header saying how it was made."""
    kept = [s for s in suggestions if s.fitted is not None]
    ids: set[str] = set()
    checks = []
    for s in kept:
        check = s.fitted
        assert check is not None
        name = check.id if check.id not in ids else f"{s.spec.name}-{check.id}"
        ids.add(name)
        checks.append(_check_yaml(name, check, s.spec))
    name = "suggested-" + resolve(options.model).key
    header = [
        f"# Suggested by `geomcheck suggest --model {options.model} --twin {options.twin_ref}` from "
        + ", ".join(sorted({s.spec.display_path for s in suggestions})) + ".",
        f"# {len(kept)} of {len(suggestions)} template checks kept: each bound sits between {options.model} and its twin",
        f"# with {options.z:g} standard errors of room on each side, fitted on the template's inputs and confirmed on a",
        "# disjoint draw of the same kind of inputs (each reason gives the numbers). Dropped:",
        *[f"# - {s.spec.display_path}::{s.check.id}: {s.why}" for s in suggestions if s.fitted is None],
    ]
    body = {"name": name, "description": f"Geometry of {options.model} that its random twin lacks (geomcheck suggest)",
            "checks": checks}
    return "\n".join(header) + "\n" + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)


def _check_yaml(name: str, check: Check, spec: Spec) -> dict:
    inputs = check.effective_inputs(spec)
    written = {"mode": inputs.mode, "sequences": inputs.sequences, "tokens": inputs.tokens, "seed": inputs.seed}
    if inputs.source is not None:
        written["source"] = inputs.source
    if inputs.bos is not None:
        written["bos"] = inputs.bos
    expect = {key: value for key, value in check.expect.model_dump(exclude_none=True).items() if key != "on" or value != "aggregate"}
    out = {"id": name, "property": check.property, "layers": check.model_dump()["layers"]}
    params = check.params.model_dump(exclude_defaults=True)
    if params:
        out["params"] = params
    out.update(inputs=written, expect=expect, reason=check.reason)
    return out


def run_suggest(options: SuggestOptions) -> int:
    """``geomcheck suggest``: exit 0 when a spec with at least one check was written, 1 when no check separated the models."""
    from geomcheck import frontend

    specs = frontend.read_specs("suggest", options.specs)
    if options.out.exists() and options.out.is_dir():
        raise GeomcheckError(f"--out {options.out} is a folder; name the spec file to write, e.g. {options.out / 'suggested.yaml'}")
    print(f"geomcheck suggest: {options.model} against {options.twin_ref}, "
          f"{sum(len(s.checks) for s in specs)} template checks, each measured on two disjoint input draws", file=sys.stderr)
    suggestions = suggest(options, specs)
    kept = sum(s.fitted is not None for s in suggestions)
    if not kept:
        print(f"geomcheck suggest: no check separated {options.model} from {options.twin_ref}; nothing written", file=sys.stderr)
        return ExitCode.FAILED
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(spec_text(options, suggestions))
    print(f"geomcheck suggest: wrote {options.out} ({kept} of {len(suggestions)} checks kept); check it with "
          f"`geomcheck run --model {options.model} --spec {options.out}`")
    return ExitCode.OK


__all__ = ["SuggestOptions", "Suggestion", "run_suggest", "spec_text", "suggest"]
