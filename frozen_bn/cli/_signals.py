"""How `frozen-bn` ends when it is interrupted: one line, the usual code.

SIGINT (Ctrl-C) and SIGTERM end a run at once, as the shell's conventions
have it (exit code 128 + the signal's number: 130 and 143), with one line
on stderr and no traceback. Every file is written to a temporary file first
(see `frozen_bn._atomic`), so an interrupted run leaves each output as it
was or whole.
"""

import contextlib
import signal

EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM arrived: like `KeyboardInterrupt`, not an `Exception`."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def terminated_by_exception():
    """Makes SIGTERM raise `Terminated` in the main thread while inside."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # Not the main thread: leave signals alone.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
