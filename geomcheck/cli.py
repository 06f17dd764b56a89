"""The ``geomcheck`` command: list models and sites, summarise a capture, print the spec schema, run specs, compare two checkpoints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from geomcheck import option_values, options
from geomcheck.errors import GeomcheckError
from geomcheck.exit_codes import ExitCode

# Named here as well, for callers that read them from the command's module.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERNAL = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE, ExitCode.ERROR, ExitCode.INTERNAL
EXIT_CODES_HELP = """\
exit codes (details in docs/exit-codes.md):
  0  every check passed or was skipped (compare: nothing regressed)
  1  a check failed (compare: a check went from passed to failed, or with --fail-on-drift moved;
     trajectory: the latest checkpoint fails a check an earlier one passed;
     suggest: no check separated the model from its twin, nothing written)
  2  bad command-line usage: an unknown option or an unusable value
  3  a check errored, or the run could not start: a spec is invalid or
     missing, a model cannot load, a report cannot be written
  4  internal error in geomcheck (a bug): one line; rerun with --traceback
"""

SIMPLE_EXIT_CODES_HELP = """\
exit codes: 0 done; 2 bad command-line usage; 3 a model or input could not be used; 4 internal error (a bug)
"""

DESCRIPTION = ("geomcheck: list models and sites, summarise a capture, print the spec schema, run specs, "
               "compare two checkpoints, follow a training run.")
MODEL_HELP = "model: an alias (see 'geomcheck models'), a hub id, a directory, a .gguf file, or random:REF for its random-init twin"
BUDGET_HELP = "largest sequences x tokens a spec may ask for (refused before any model loads)"


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (argparse prints the whole usage first), exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _typed(parse):
    """An argparse ``type`` from an option_values parser: its message becomes argparse's usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except option_values.OptionValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its fallback message
    return convert


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    options.add_to_argparse(parser, options.MODEL_OPTIONS, _typed)


def _load_options(args: argparse.Namespace):
    from pathlib import Path

    from geomcheck.models.loader import LoadOptions

    # adapters.yaml next to the specs counts as declared, like the one given with --adapters
    from geomcheck.spec.builtin import PREFIX

    given = [s for s in getattr(args, "specs", None) or ["specs"] if not str(s).startswith(PREFIX)]
    spec_dirs = [Path(s) if Path(s).is_dir() else Path(s).parent for s in given]
    beside = tuple(d / "adapters.yaml" for d in spec_dirs if (d / "adapters.yaml").is_file())
    return LoadOptions(
        device=args.device, dtype=args.dtype, seed=args.seed, allow_pickle=args.allow_pickle, trust_remote_code=args.trust_remote_code,
        adapters=tuple(Path(p) for p in args.adapters) + beside,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="geomcheck", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)

    class _Commands:
        """add_parser that also shows the one-line help as the subcommand's own description (``geomcheck run -h``)."""

        choices = subparsers.choices

        @staticmethod
        def add_parser(name: str, help: str):  # noqa: A002 - argparse's own keyword
            return subparsers.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")

    commands = _Commands()

    commands.add_parser("models", help="known aliases and whether each is available offline now")

    sites = commands.add_parser("sites", help="list a model's capture sites, one per line")
    sites.add_argument("--model", required=True, metavar="REF", help=MODEL_HELP)
    sites.add_argument("--select", action="append", default=None, help="glob pattern(s), e.g. 'blocks.*.attn_out'")
    _add_model_options(sites)

    summary = commands.add_parser("capture", help="capture a model and print per-block residual norms")
    summary.add_argument("--model", required=True, metavar="REF", help=MODEL_HELP)
    summary.add_argument("--mode", default="corpus", choices=["corpus", "text", "dataset", "single_token", "repeated_token"],
                         help="where the input tokens come from (default: the bundled corpus)")
    summary.add_argument("--source", default=None, help="file/folder for --mode text, dataset id for --mode dataset")
    summary.add_argument("--sequences", type=_typed(option_values.positive_int), default=8, help="number of sequences (default 8)")
    summary.add_argument("--tokens", type=_typed(option_values.positive_int), default=256, help="tokens per sequence (default 256)")
    summary.add_argument("--bos", choices=["yes", "no", "default"], default="default",
                         help="prepend the BOS token: yes, no, or what the model's tokenizer does (default)")
    summary.add_argument("--batch-size", type=_typed(option_values.positive_int), default=8, help="sequences per forward pass (default 8)")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    _add_model_options(summary)

    commands.add_parser("schema", help="print the JSON Schema of spec files")

    run = commands.add_parser("run", help="check models against specs (same checks and exit codes as pytest)")
    run.add_argument("--model", action="append", required=True, dest="models", metavar="REF", help=MODEL_HELP + "; repeatable")
    run.add_argument("--spec", action="append", default=None, dest="specs", help="spec files or folders, or builtin:NAME for a shipped spec (default: specs/ if the folder exists, else every built-in spec)")
    run.add_argument("--report", default=None, type=_typed(option_values.output_file),
                     help="HTML report path (default reports/MODEL-SPEC.html)")
    run.add_argument("--no-report", action="store_true", help="write no HTML report")
    options.add_to_argparse(run, options.RUN_OPTIONS, _typed)
    _add_model_options(run)

    compare = commands.add_parser("compare", help="measure two checkpoints on identical inputs; exit 1 when a check flips from passed to failed")
    compare.add_argument("ref_a", metavar="REF_A", help="the reference checkpoint (e.g. the last released one)")
    compare.add_argument("ref_b", metavar="REF_B", help="the candidate checkpoint")
    compare.add_argument("--spec", action="append", default=None, dest="specs", help="spec files or folders, or builtin:NAME for a shipped spec (default: specs/ if the folder exists, else every built-in spec)")
    compare.add_argument("--report", default=None, type=_typed(option_values.output_file),
                         help="HTML report path (default reports/compare-A-vs-B.html)")
    compare.add_argument("--no-report", action="store_true", help="write no HTML comparison page")
    compare.add_argument("--fail-on-drift", action="store_true",
                         help="exit 1 also when values moved beyond noise and floor (paired drift and per-block profile), "
                              "not only when a check flips from passed to failed")
    compare.add_argument("--token-budget", type=_typed(option_values.positive_int), default=None, help=BUDGET_HELP)
    _add_model_options(compare)

    trajectory = commands.add_parser(
        "trajectory", help="measure every checkpoint of a training run on identical inputs; exit 1 when the latest "
                           "checkpoint fails a check that an earlier one passed")
    trajectory.add_argument("sources", nargs="+", metavar="DIR_OR_GLOB",
                            help="a Trainer output folder (its checkpoint-*/ folders), a glob, or model references; "
                                 "ordered by step (trainer_state.json, else the number in the folder name)")
    trajectory.add_argument("--spec", action="append", default=None, dest="specs", help="spec files or folders, or builtin:NAME for a shipped spec (default: specs/ if the folder exists, else every built-in spec)")
    trajectory.add_argument("--report", default=None, type=_typed(option_values.output_file),
                            help="HTML report path (default reports/trajectory-<run folder>.html)")
    trajectory.add_argument("--cache", default=None, type=_typed(option_values.output_folder),
                            help="folder of per-checkpoint results (default: <report stem>.cache/ beside the report); "
                                 "a checkpoint already there with the same spec and inputs is not measured again")
    trajectory.add_argument("--remeasure", action="store_true", help="measure every checkpoint again, ignoring the cache")
    trajectory.add_argument("--token-budget", type=_typed(option_values.positive_int), default=None,
                            help="largest sequences x tokens a spec may ask for")
    _add_model_options(trajectory)
    suggest = commands.add_parser(
        "suggest", help="write a spec whose bounds sit between a model and its random twin, fitted on one input draw "
                        "and confirmed on a disjoint one")
    suggest.add_argument("--model", required=True, metavar="REF", help=MODEL_HELP)
    suggest.add_argument("--twin", default=None, metavar="REF", help="what the model should differ from (default random:MODEL)")
    suggest.add_argument("--spec", action="append", default=None, dest="specs",
                         help="template spec files or folders whose checks are fitted (default builtin:decoder)")
    suggest.add_argument("--out", required=True, type=_typed(option_values.output_file), help="the spec file to write")
    suggest.add_argument("--margin", type=_typed(option_values.margin), default=3.0,
                         help="standard errors of room between each bound and both models (default 3)")
    options.add_to_argparse(suggest, (options.TOKEN_BUDGET, options.BATCH_SIZE), _typed)
    _add_model_options(suggest)
    for sub in (parser, *commands.choices.values()):
        sub.add_argument("--traceback", action="store_true", default=argparse.SUPPRESS if sub is not parser else False,
                         help="on an internal error, print the full traceback")
    for name, sub in (("", parser), *commands.choices.items()):
        sub.epilog = EXIT_CODES_HELP if not name or name in CHECKING else SIMPLE_EXIT_CODES_HELP
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_baseline", False) and (getattr(args, "update", False) or getattr(args, "force_update", False)):
        parser.error("--update and --force-update record a baseline; --no-baseline reads and writes none: give one of them")
    if args.command in MEASURING:
        from geomcheck.capture.allocator import pin_malloc_thresholds

        pin_malloc_thresholds()  # this process only; see geomcheck.capture.allocator
    try:
        return COMMANDS[args.command](args)
    except GeomcheckError as exc:
        print(f"geomcheck: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("geomcheck: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # the reader went away (`geomcheck models | head`): nothing left to say to it
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug gets one line and its own exit code
        if args.traceback:
            import traceback

            traceback.print_exc()
        else:
            text = str(exc).strip().splitlines()
            print(f"geomcheck: internal error: {type(exc).__name__}: {text[0][:200] if text else ''} "
                  "(a bug in geomcheck; rerun with --traceback and report it)", file=sys.stderr)
        return EXIT_INTERNAL


def cmd_models(args: argparse.Namespace) -> int:
    from geomcheck.models.adapters import TABLES
    from geomcheck.models.loader import availability

    rows = availability()
    widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
    for alias, target, status in rows:
        print(f"{alias:<{widths[0]}}  {target:<{widths[1]}}  {status}")
    print("\nAlso accepted: a hub id (owner/name), a local directory, a .gguf file, and random:<any of these>.")
    print("\nArchitecture families (other model types: an adapters.yaml, or an adapter inferred and verified at load;")
    print("see docs/architectures.md):")
    columns = [(table.family, table.block_kind, table.position_scheme) for table in TABLES]
    widths = [max(len(row[i]) for row in columns) for i in range(3)]
    for table, row in zip(TABLES, columns):
        print("  " + "  ".join(f"{value:<{width}}" for value, width in zip(row, widths)) + f"  {', '.join(table.model_types)}")
    return EXIT_OK


def cmd_sites(args: argparse.Namespace) -> int:
    from geomcheck.capture.hooks import model_sites
    from geomcheck.capture.sites import select_sites
    from geomcheck.models.loader import load

    loaded = load(args.model, _load_options(args))
    sites = model_sites(loaded)
    # stderr, so stdout stays one site name per line for scripts
    print(f"# {loaded.model.config.model_type}: {loaded.table.describe()}", file=sys.stderr)
    if loaded.table.scheme == "parallel":
        print("# parallel blocks: no resid_mid site (attention and MLP both read the block input)", file=sys.stderr)
    if args.select:
        sites = select_sites(sites, args.select)
    print("\n".join(site.name for site in sites))
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    from geomcheck.capture.hooks import CapturePlan, capture
    from geomcheck.capture.inputs import InputSpec, build_batch, check_budget
    from geomcheck.capture.sites import Point
    from geomcheck.models.loader import load

    bos = {"yes": True, "no": False, "default": None}[args.bos]
    spec = InputSpec(mode=args.mode, source=args.source, sequences=args.sequences, tokens=args.tokens, seed=args.seed, bos=bos)
    check_budget(spec, context_length=None)
    loaded = load(args.model, _load_options(args))
    check_budget(spec, context_length=loaded.context_length)
    batch = build_batch(
        spec, loaded.tokenizer, bos_token_id=loaded.bos_token_id, default_bos=loaded.default_bos, vocab_size=loaded.model.config.vocab_size
    )
    started = time.perf_counter()
    plan = CapturePlan(sites=("embed", "blocks.*.resid_post", "final_norm"), samples=0, batch_size=args.batch_size, seed=args.seed)
    acts = capture(loaded, batch, plan)
    seconds = time.perf_counter() - started
    rows = []
    named = [("embed", acts.site(None, Point.EMBED))]
    named += [(f"blocks.{b}.resid_post", s) for b, s in sorted(acts.block_stats(Point.RESID_POST).items())]
    named.append(("final_norm", acts.site(None, Point.FINAL_NORM)))
    for name, stats in named:
        first = float(stats.norms[:, 0].mean())
        rest = float(np.median(stats.norms[:, 1:])) if acts.length > 1 else float("nan")
        rows.append({"site": name, "position_0": first, "median_rest": rest, "ratio": first / rest if rest else float("nan")})
    # NaN marks a block whose parts were non-finite, so it could not be verified.
    worst = max((v.rms_error for v in acts.verification if np.isfinite(v.rms_error)), default=0.0)
    unverified = [v.block for v in acts.verification if not np.isfinite(v.rms_error)]
    header = {
        "model": loaded.ref.text,
        "source": loaded.source,
        "inputs": batch.description,
        "bos": batch.bos,
        "load_seconds": round(loaded.load_seconds, 2),
        "capture_seconds": round(seconds, 2),
        "verified_blocks": len(acts.verification) - len(unverified),
        "unverifiable_blocks": unverified,
        "worst_relative_rms_error": worst,
    }
    if args.json:
        print(json.dumps({**header, "rows": rows}, indent=2))
        return EXIT_OK
    for key, value in header.items():
        print(f"{key}: {value}")
    print(f"\n{'site':<22} {'|x| pos 0':>12} {'median |x| pos>=1':>18} {'ratio':>9}")
    for row in rows:
        print(f"{row['site']:<22} {row['position_0']:>12.2f} {row['median_rest']:>18.2f} {row['ratio']:>9.2f}")
    return EXIT_OK


def _spec_paths(command: str, args: argparse.Namespace) -> tuple[str, ...]:
    from geomcheck import frontend

    return frontend.spec_paths(command, args.specs)


def cmd_schema(args: argparse.Namespace) -> int:
    from geomcheck.spec.schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geomcheck.gate.book import CLI_UPDATE
    from geomcheck import options as options_module
    from geomcheck.options import ci_environment
    from geomcheck.runner import BaselineOptions, RunOptions, run_cli

    if not args.no_baseline and Path(args.baseline_dir) == Path(str(options_module.CLI_DEFAULTS["baseline-dir"])):
        from geomcheck.paths import refuse_linked_default

        refuse_linked_default(Path(args.baseline_dir), "--baseline-dir")
    if not args.no_report and args.report is None:  # refused now, not after the whole run
        from geomcheck.paths import refuse_linked_default
        from geomcheck.report import DEFAULT_DIRECTORY

        refuse_linked_default(DEFAULT_DIRECTORY, "--report")
    options = RunOptions(
        models=tuple(args.models),
        specs=_spec_paths("run", args),
        report=None if args.no_report else args.report,
        write_report=not args.no_report,
        umap=args.umap,
        input_text=args.report_input_text,
        batch_size=args.batch_size,
        load=_load_options(args),
        token_budget=args.token_budget,
        baselines=None if args.no_baseline else BaselineOptions(root=Path(args.baseline_dir), update=args.update or args.force_update,
                                                                force=args.force_update, update_command=CLI_UPDATE,
                                                                ci=args.strict or ci_environment()),
        strict=args.strict,
    )
    return run_cli(options)


def cmd_compare(args: argparse.Namespace) -> int:
    from geomcheck.compare_run import CompareOptions, run_compare

    options = CompareOptions(
        ref_a=args.ref_a,
        ref_b=args.ref_b,
        specs=_spec_paths("compare", args),
        report=args.report,
        write_report=not args.no_report,
        load=_load_options(args),
        token_budget=args.token_budget,
        fail_on_drift=args.fail_on_drift,
    )
    return run_compare(options)


def cmd_trajectory(args: argparse.Namespace) -> int:
    from geomcheck.trajectory.run import TrajectoryOptions, run_trajectory

    options = TrajectoryOptions(
        sources=tuple(args.sources),
        specs=_spec_paths("trajectory", args),
        report=args.report,
        cache=args.cache,
        load=_load_options(args),
        token_budget=args.token_budget,
        remeasure=args.remeasure,
    )
    return run_trajectory(options)


def cmd_suggest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from geomcheck.runner import DEFAULT_TOKEN_BUDGET
    from geomcheck.suggest import SuggestOptions, run_suggest

    options = SuggestOptions(
        model=args.model,
        twin=args.twin,
        out=Path(args.out),
        specs=tuple(args.specs or ["builtin:decoder"]),
        z=args.margin,
        load=_load_options(args),
        token_budget=args.token_budget or DEFAULT_TOKEN_BUDGET,
        batch_size=args.batch_size or 8,
    )
    return run_suggest(options)


COMMANDS = {"models": cmd_models, "sites": cmd_sites, "capture": cmd_capture, "schema": cmd_schema, "run": cmd_run, "compare": cmd_compare,
            "trajectory": cmd_trajectory, "suggest": cmd_suggest}
MEASURING = frozenset({"capture", "run", "compare", "trajectory", "suggest"})  # commands that run forward passes
CHECKING = frozenset({"run", "compare", "trajectory", "suggest"})  # commands whose exit code says how checks went

if __name__ == "__main__":
    sys.exit(main())
