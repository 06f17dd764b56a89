"""``geomcheck --help`` for every subcommand: every option explained, no raw markup, the real exit codes."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from geomcheck.cli import EXIT_ERROR, EXIT_FAILED, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, build_parser

SUBCOMMANDS = ("models", "sites", "capture", "schema", "run", "compare", "trajectory", "suggest")
CHECKING = ("", "run", "compare", "trajectory", "suggest")  # the commands whose exit code says how checks went


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {"geomcheck": parser, **commands.choices}


def test_every_option_of_every_subcommand_has_help():
    missing = [f"{name} {'/'.join(action.option_strings) or action.dest}"
               for name, parser in _subparsers().items() for action in parser._actions
               if not action.help and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))]
    assert missing == []


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_has_no_raw_markup_and_states_the_exit_codes(command):
    argv = [sys.executable, "-m", "geomcheck.cli", *([command] if command else []), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "``" not in text and "`" not in text and "**" not in text
    tag = re.search(r"</?(b|i|em|strong|code|a|p|br|span|div|pre)\b[^>]*>", text)
    assert tag is None, tag
    if command in CHECKING:
        for code in (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERNAL):
            assert re.search(rf"^\s+{code}\s+\S", text, re.M), code
    else:  # no checks run: no check-failure code to explain
        assert "exit codes: 0 done; 2 bad command-line usage" in text and "a check failed" not in text
    if command:
        assert text.split("\n\n")[1].strip().endswith("."), "the subcommand's own description"
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERNAL) == (0, 1, 2, 3, 4)
