"""The `frozen-bn` command line tool.

Every subcommand is a `Command` (`_command.py`): its name, a one-line help,
a function that adds its arguments, and a function that runs it and returns
an exit code. Each is defined with the others of its kind: model surgery
(`_surgery.py`), export (`_export.py`), reports on a model file
(`_reports.py`) and the demo (`_demo.py`); `_files.py` reads and writes
their files.
Errors the user can fix are raised as `UsageError` and reported on stderr
with exit code 2.

Nothing here imports Keras before a command runs (under `frozen-bn` the
package imports nothing itself: `frozen_bn/__init__.py`), so `--help` and
`--version` answer at once. Before a command runs, TensorFlow's logs are
quieted unless the user set `TF_CPP_MIN_LOG_LEVEL` or passed `--verbose`
(`frozen_bn._tf_logs`).
"""

import argparse
import sys

from frozen_bn import _tf_logs
from frozen_bn.cli import _demo, _export, _reports, _signals, _surgery
from frozen_bn.cli._command import EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["EXIT_OK", "EXIT_USAGE", "UsageError", "build_parser", "main"]

COMMANDS = [
    *_surgery.COMMANDS,
    _export.COMMAND,
    _demo.COMMAND,
    *_reports.COMMANDS,
]


def build_parser():
    """The argument parser of `frozen-bn`, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="frozen-bn",
        description="Keras BatchNormalization that stays frozen when frozen.",
    )
    from frozen_bn import __version__

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show TensorFlow's logs (hidden unless TF_CPP_MIN_LOG_LEVEL is "
        "set)",
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True
    )
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.help
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None):
    """Entry point of the `frozen-bn` console script; returns the exit code.

    Errors the user can fix end with exit code 2, SIGINT with 130 and
    SIGTERM with 143, each with one line on stderr.
    """
    args = build_parser().parse_args(argv)
    if not args.verbose:
        _tf_logs.quiet()
    _tf_logs.obey_level()
    prefix = f"frozen-bn {args.command}"
    try:
        with _signals.stopped_by_signals():
            return args.run(args)
    except UsageError as error:
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except _signals.Stopped as stopped:
        print(f"{prefix}: {stopped.word}", file=sys.stderr)
        return stopped.exit_code
