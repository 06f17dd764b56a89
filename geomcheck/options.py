"""The options both front ends offer, declared once: ``--NAME`` for ``geomcheck``, ``--geom-NAME`` for pytest.

Each option names its parser (``geomcheck.option_values``), so a bad value is the same one-line usage
error in either front end, and its help text is written once. Whether pytest may also read it from the
ini file is part of the declaration: options that decide what a published report may show, or that
allow a checkpoint's own code, are command-line only, because the ini file belongs to the repository
being checked and the command line to whoever runs the gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from geomcheck import option_values

Kind = Literal["value", "flag", "list"]


@dataclass(frozen=True)
class Option:
    name: str  # "baseline-dir": --baseline-dir for geomcheck, --geom-baseline-dir for pytest
    help: str
    kind: Kind = "value"
    parse: Callable[[str], object] | None = None  # option_values parser: the value's one-line usage error
    ini: bool = True  # pytest may read it from the ini file (as geom_NAME)
    metavar: str | None = None
    choices: tuple[str, ...] | None = None  # geomcheck offers these as argparse choices

    def help_for(self, prefix: str) -> str:
        """The help text with other options spelled as this front end spells them ({prefix}update)."""
        return self.help.format(prefix=prefix)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def cli_flag(self) -> str:
        return f"--{self.name}"

    @property
    def pytest_flag(self) -> str:
        return f"--geom-{self.name}"

    @property
    def pytest_dest(self) -> str:
        return f"geom_{self.dest}"


DEVICE = Option("device", "cpu (default), cuda, cuda:N, mps, or auto (shard across devices with accelerate)", parse=option_values.device)
DTYPE = Option("dtype", "float32 (default), bfloat16 or float16: weights are cast to it after loading", parse=option_values.dtype,
               choices=option_values.DTYPE_NAMES)
SEED = Option("seed", "seed for random: twins and input sampling (default 0)", parse=option_values.seed)
ALLOW_PICKLE = Option("allow-pickle", "allow pickle-based checkpoints (.bin/.pt), loaded with weights_only=True", kind="flag", ini=False)
TRUST_REMOTE_CODE = Option("trust-remote-code", "allow a checkpoint's own Python code (auto_map)", kind="flag", ini=False)
ADAPTERS = Option("adapters", "adapters.yaml declaring module layouts for model types geomcheck does not know "
                  "(also read: adapters.yaml beside the specs, or in pytest's rootdir)", kind="list", metavar="YAML", ini=False)
TOKEN_BUDGET = Option("token-budget", "largest sequences x tokens a spec may ask for (refused before any model loads)",
                      parse=option_values.positive_int)
BATCH_SIZE = Option("batch-size", "sequences per forward pass while capturing (default 8; lower it when the device runs out of memory)",
                    parse=option_values.positive_int)
UMAP = Option("umap", "add a UMAP view of the attention/MLP separation to the report (about 10 s more: numba compiles it)", kind="flag")
REPORT_INPUT_TEXT = Option("report-input-text", "show the tokens of text and dataset inputs in the report "
                           "(off: they come from the checked repository)", kind="flag", ini=False)
UPDATE = Option("update", "record the measured values (with standard errors) as the new baseline; checks that fail their "
                "fixed expectations are not recorded", kind="flag", ini=False)
FORCE_UPDATE = Option("force-update", "like {prefix}update, but record failing checks too", kind="flag", ini=False)
NO_BASELINE = Option("no-baseline", "compare with fixed expectations only; neither read nor write baselines", kind="flag", ini=False)
BASELINE_DIR = Option("baseline-dir", "where baselines live (default: baselines/)", parse=option_values.output_folder)
STRICT = Option("strict", "fail when a spec has no recorded baseline or when every check of a model was skipped "
                "(always on under CI=true): a gate that did not run must not pass", kind="flag")

MODEL_OPTIONS = (DEVICE, DTYPE, SEED, ALLOW_PICKLE, TRUST_REMOTE_CODE, ADAPTERS)
RUN_OPTIONS = (UMAP, REPORT_INPUT_TEXT, TOKEN_BUDGET, BATCH_SIZE, UPDATE, FORCE_UPDATE, NO_BASELINE, BASELINE_DIR, STRICT)


def ci_environment() -> bool:
    """Whether this runs under CI (the CI variable that GitHub, GitLab and most services set)."""
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


CLI_DEFAULTS: dict[str, object] = {"device": "cpu", "dtype": "float32", "seed": 0, "batch-size": 8, "baseline-dir": "baselines"}


def add_to_argparse(parser, options: tuple[Option, ...], typed: Callable[[Callable[[str], object]], Callable[[str], object]]) -> None:
    """``--NAME`` for each option on a ``geomcheck`` subcommand; ``typed`` turns a parser's error into argparse's."""
    for option in options:
        if option.kind == "flag":
            parser.add_argument(option.cli_flag, action="store_true", dest=option.dest, help=option.help_for("--"))
        elif option.kind == "list":
            parser.add_argument(option.cli_flag, action="append", default=[], dest=option.dest, metavar=option.metavar,
                                help=option.help_for("--"))
        elif option.choices is not None:
            parser.add_argument(option.cli_flag, dest=option.dest, choices=option.choices, default=CLI_DEFAULTS.get(option.name),
                                help=option.help_for("--"))
        else:
            parser.add_argument(option.cli_flag, dest=option.dest, default=CLI_DEFAULTS.get(option.name), metavar=option.metavar,
                                type=typed(option.parse) if option.parse is not None else None, help=option.help_for("--"))


def add_to_pytest(parser, group, options: tuple[Option, ...]) -> None:
    """``--geom-NAME`` for each option, and the ini key ``geom_NAME`` where the declaration allows one.

    Values are read and checked later (pytest_plugin.collect), so a bad one is one usage error, not a
    traceback at option-parsing time."""
    for option in options:
        text = option.help_for("--geom-")
        if option.kind == "flag":
            group.addoption(option.pytest_flag, action="store_true", dest=option.pytest_dest, default=False, help=text)
            if option.ini:
                parser.addini(option.pytest_dest, type="bool", default=False, help=f"like {option.pytest_flag}")
        elif option.kind == "list":
            group.addoption(option.pytest_flag, action="append", dest=option.pytest_dest, default=[], help=text)
        else:
            group.addoption(option.pytest_flag, action="store", dest=option.pytest_dest, default=None, help=text)
            if option.ini:
                parser.addini(option.pytest_dest, type="string", help=text)
