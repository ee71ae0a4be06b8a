"""Makes TensorFlow's C++ start-up logs obey `TF_CPP_MIN_LOG_LEVEL`.

TensorFlow 2.21 reads `TF_CPP_MIN_LOG_LEVEL` once its logging is set up,
which is after `import tensorflow` has logged its first lines from C++
straight to file descriptor 2, whatever the level:

    WARNING: All log messages before absl::InitializeLog() is called ...
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. ...
    I0000 00:00:... cudart_stub.cc:31] Could not find cuda drivers ...

(twice: two of its shared libraries log them). Lines logged after the
import, such as `E0000 ... failed call to cuInit` at the first op, do obey
the level. So `obey_level()` wraps TensorFlow's first import, whoever
starts it, with descriptor 2 sent to a temporary file, and writes back
every line the level lets through: the level then means what it says
from the first line on. With no level set it changes nothing, so a
program that imports frozen_bn keeps TensorFlow's logging as its user set
it. The `frozen-bn` command sets the level to `QUIET` unless the user set
one or asked for `--verbose` (`quiet()`), before anything imports Keras.
"""

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET = "3"  # FATAL only
COMMAND = "frozen-bn"
PACKAGE = "frozen_bn"

# An absl log line: severity and date ("I0000"), time (before
# InitializeLog, "00:00:" and seconds since 1970), thread, file:line].
_LOG_LINE = re.compile(rb"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_BANNER = b"WARNING: All log messages before absl::InitializeLog()"
_SEVERITIES = b"IWEF"  # hidden from level 1, 2, 3 and never, in this order


def started_from_command_line():
    """Whether this process is `frozen-bn` or `python -m frozen_bn`.

    Only meaningful while the package is being imported, which is when
    `python -m` has not yet replaced `sys.argv[0]`.
    """
    argv = getattr(sys, "argv", None) or [""]  # embedded interpreters
    if os.path.basename(argv[0]).startswith(COMMAND):
        return True
    # While `python -m MODULE ARGS` imports MODULE's packages, argv is
    # ["-m", *ARGS], and MODULE precedes ARGS in the interpreter's own argv
    # (as "MODULE" or "-mMODULE").
    if argv[0] != "-m" or len(sys.orig_argv) < len(argv):
        return False
    return sys.orig_argv[-len(argv)].removeprefix("-m") == PACKAGE


def quiet(environ=None):
    """Sets `TF_CPP_MIN_LOG_LEVEL` to `QUIET` unless it is set.

    Args:
        environ: The environment to change, a dict; defaults to
            `os.environ`, this process's own.
    """
    environ = os.environ if environ is None else environ
    environ.setdefault(VARIABLE, QUIET)


def obey_level():
    """Makes TensorFlow's first import obey the log level, when one is set.

    Wraps the import of `tensorflow` that comes next, whoever starts it
    (Keras on its TensorFlow backend, `keras.utils.set_random_seed` on any
    backend, tf_keras), so that the lines it logs at start-up are held
    back and only those the level shows are written. Changes nothing when
    TensorFlow is imported already or no level is set.
    """
    waiting = any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path)
    if _level() > 0 and "tensorflow" not in sys.modules and not waiting:
        sys.meta_path.insert(0, _TensorFlowFinder())


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as usual, with a loader that filters; leaves
    `sys.meta_path` when TensorFlow is imported (a mere `find_spec`, as
    `importlib.util.find_spec("tensorflow")` makes, keeps it waiting)."""

    def __init__(self):
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._finding:
            return None
        self._finding = True  # The search below asks this finder too.
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader, self)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def __getattr__(self, name):  # resource readers and the like
        return getattr(self._loader, name)

    def exec_module(self, module):
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        with _filtered_stderr(_level()):
            self._loader.exec_module(module)


def _level():
    value = os.environ.get(VARIABLE, "0").strip()
    return int(value) if value.isdigit() else 0


def _shown(line, level):
    if line.startswith(_BANNER):
        return level == 0
    match = _LOG_LINE.match(line)
    return match is None or _SEVERITIES.index(match[1]) >= level


@contextlib.contextmanager
def _filtered_stderr(level):
    """Holds back what the block writes to descriptor 2, then writes back
    the lines `level` shows (also when the block raises)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            shown = [line for line in capture if _shown(line, level)]
            sys.stderr.buffer.write(b"".join(shown))
            sys.stderr.flush()
