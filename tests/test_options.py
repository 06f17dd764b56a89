"""The options both front ends offer come from one table: same names, same help, same value checks."""

from __future__ import annotations

import pytest

from geomcheck import options
from geomcheck.cli import build_parser

SHARED = (*options.MODEL_OPTIONS, *options.RUN_OPTIONS)


def run_parser():
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command")
    return subcommands.choices["run"]


@pytest.mark.parametrize("option", SHARED, ids=lambda o: o.name)
def test_geomcheck_run_offers_every_shared_option_with_the_declared_help(option):
    action = next(a for a in run_parser()._actions if option.cli_flag in a.option_strings)
    assert action.dest == option.dest and action.help == option.help_for("--")


def test_pytest_offers_every_shared_option_and_ini_keys_only_where_declared(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    for option in SHARED:
        assert option.pytest_flag in text, option.name
    ini_section = text[text.index("[pytest]"):]
    for option in SHARED:
        listed = f"  {option.pytest_dest} (" in ini_section
        assert listed == option.ini, option.name


def test_options_that_decide_what_a_report_shows_or_what_code_runs_are_command_line_only():
    for option in (options.REPORT_INPUT_TEXT, options.TRUST_REMOTE_CODE, options.ALLOW_PICKLE, options.UPDATE):
        assert not option.ini


def test_help_spells_other_options_as_each_front_end_does():
    assert "like --update," in options.FORCE_UPDATE.help_for("--")
    assert "like --geom-update," in options.FORCE_UPDATE.help_for("--geom-")
