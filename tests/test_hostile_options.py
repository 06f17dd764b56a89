"""Command-line values a CI job could be handed (hostile-inputs issue, item 8 in part): one usage line, never a
traceback, never a silently ignored option, never a run that fails only after all its work."""

from __future__ import annotations

import pytest

from geomcheck import option_values
from geomcheck.cli import main


@pytest.mark.parametrize("argv, message", [
    (["--baseline-dir", "~no_such_user_geomcheck/x"], "names a home folder that does not exist"),
    (["--report", "/proc/x.html"], "a kernel folder"),
    (["--baseline-dir", "/sys/geomcheck"], "a kernel folder"),
    (["--token-budget", "٣"], "in ASCII digits"),
    (["--seed", "１２"], "in ASCII digits"),
    (["--update", "--no-baseline"], "--no-baseline reads and writes none"),
    (["--force-update", "--no-baseline"], "--no-baseline reads and writes none"),
])
def test_a_bad_value_is_one_usage_line_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["run", "--model=random:nothing", "--spec=specs", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_ascii_digits_still_parse():
    assert option_values.positive_int(" 12 ") == 12 and option_values.seed("0") == 0


def test_pytest_refuses_update_with_no_baseline(pytester):
    result = pytester.runpytest("--geom-model=random:nothing", "--geom-update", "--geom-no-baseline")
    assert result.ret == 4
    assert "--geom-no-baseline reads and writes none" in result.stderr.str()
