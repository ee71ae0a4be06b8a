"""What every `frozen-bn` subcommand is made of, and how it fails."""

import argparse
import dataclasses
from collections.abc import Callable

EXIT_OK = 0
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the command line or its files; shown without traceback."""


@dataclasses.dataclass(frozen=True)
class Command:
    """A subcommand: its name, one-line help, arguments and what it runs.

    `run` takes the parsed arguments and returns the exit code.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
