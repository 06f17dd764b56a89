"""Exceptions that carry what went wrong, what was expected and the remedy, so callers print one line."""

from __future__ import annotations

from dataclasses import dataclass


class GeomcheckError(Exception):
    """Base of every error geomcheck raises on purpose; its ``str`` is meant for the user verbatim."""


class ModelLoadError(GeomcheckError, OSError):
    """A model reference could not be resolved or loaded; the message ends with a remedy."""

    def __init__(self, ref: str, problem: str, remedy: str) -> None:
        self.ref = ref
        self.problem = problem
        self.remedy = remedy
        super().__init__(f"cannot load model {ref!r}: {problem}. Remedy: {remedy}")


class UnsupportedArchitectureError(GeomcheckError, ValueError):
    """No adapter table knows the model's module layout, or the architecture cannot be captured at all."""

    def __init__(self, model_type: str, supported: tuple[str, ...], reason: str | None = None, fixable: bool = True) -> None:
        self.model_type = model_type
        self.supported = supported
        self.reason = reason
        self.fixable = fixable
        text = f"architecture {model_type!r} is not supported by geomcheck"
        if reason:
            text += f": {reason}"
        if fixable:
            text += (
                ". To add it without editing geomcheck, declare its module layout in an adapters.yaml "
                "(next to your specs, or via --geom-adapters / $GEOMCHECK_ADAPTERS) or publish an ArchitectureTable "
                "under the 'geomcheck.adapters' entry-point group; see docs/architectures.md. "
                f"Built-in tables: {', '.join(sorted(supported))}"
            )
        super().__init__(text)


class AdapterFileError(GeomcheckError, ValueError):
    """A user-declared adapter table (adapters.yaml or an entry point) is malformed."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"adapter table {where} {problem}. Remedy: see docs/architectures.md for the adapters.yaml format")


class SiteError(GeomcheckError, ValueError):
    """A site name or pattern is malformed or selects nothing."""


class InputError(GeomcheckError, ValueError):
    """The requested inputs cannot be built (empty corpus, too long for the context, over budget)."""


class VerificationError(GeomcheckError, AssertionError):
    """Captured activations do not add up to the model's own hidden states."""

    def __init__(self, block: int | str, rms_error: float, tolerance: float, detail: str) -> None:
        self.block = block
        self.rms_error = rms_error
        self.tolerance = tolerance
        self.detail = detail
        super().__init__(
            f"capture verification failed at block {block}: relative RMS error {rms_error:.3g} "
            f"exceeds tolerance {tolerance:.3g} ({detail})"
        )


@dataclass(frozen=True)
class SpecProblem:
    """One problem in a spec file, located precisely enough for an editor to jump to it."""

    path: str
    line: int
    column: int
    key_path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        # Keys and values come from the file: escaped, so a newline or ESC in them cannot forge a log line.
        from geomcheck.paths import printable

        text = f"{printable(self.path)}:{self.line}:{self.column}: {printable(self.key_path)}: {printable(self.message)}"
        if self.hint:
            text += f"\n  hint: {printable(self.hint)}"
        return text


class SpecError(GeomcheckError, ValueError):
    """A spec file is malformed; holds every problem found in it, not just the first."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class SpecWarning(UserWarning):
    """A spec that validates but is likely mistaken (a zero-width pass band); shown with file:line, never fatal."""
