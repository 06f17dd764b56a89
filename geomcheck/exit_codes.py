"""The exit codes of every geomcheck command, in one place (docs/exit-codes.md holds the same table).

A CI job must tell "the model got worse" (1) from "the gate could not run" (2, 3, 4); pytest keeps
its own codes, so these are for the ``geomcheck`` command only.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every check passed or was skipped; compare and trajectory: nothing regressed
    FAILED = 1  # a check failed; compare and trajectory: a check went from passed to failed
    USAGE = 2  # bad command-line usage
    ERROR = 3  # a check errored, or the run could not start
    INTERNAL = 4  # a bug in geomcheck


REGRESSED = ExitCode.FAILED  # how compare and trajectory name code 1
