"""How `frozen-bn` ends when it is interrupted: one line, the usual code.

SIGINT (Ctrl-C) and SIGTERM end a run at once, as the shell's conventions
have it (exit code 128 + the signal's number: 130 and 143), with one line
on stderr and no traceback. Every file is written to a temporary file first
(see `frozen_bn._atomic`), so an interrupted run leaves each output as it
was or whole.

Python drops an exception raised where it cannot propagate: in a garbage
collector callback (JAX registers one, and TensorFlow imports JAX when it
is installed) or in `__del__`. A signal that lands there does not stop the
run, and Python prints the traceback it dropped. So each signal is also
remembered, its dropped exception goes unprinted, and a run that goes on
to its end still reports it and exits with its code.
"""

import contextlib
import signal
import sys

_WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Stopped(BaseException):
    """A signal stopped the run: like `KeyboardInterrupt`, not an `Exception`.

    Args:
        signum: The signal's number.
    """

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
        self.word = _WORDS[signum]
        self.exit_code = 128 + signum


@contextlib.contextmanager
def stopped_by_signals():
    """Makes SIGINT and SIGTERM raise `Stopped` in the main thread while inside.

    Raises `Stopped` on leaving too, when a signal arrived whose exception
    Python dropped. Outside the main thread it leaves signals alone.
    """
    received = []

    def stop(signum, frame):
        received.append(signum)
        raise Stopped(signum)

    def print_unless_stopped(unraisable):
        if not isinstance(unraisable.exc_value, Stopped):
            previous_hook(unraisable)

    try:
        previous = {s: signal.signal(s, stop) for s in _WORDS}
    except ValueError:  # Not the main thread.
        yield
        return
    previous_hook, sys.unraisablehook = sys.unraisablehook, print_unless_stopped
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise Stopped(received[0])
