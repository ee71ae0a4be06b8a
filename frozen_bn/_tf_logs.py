"""Quiets TensorFlow's C++ start-up logs in frozen_bn's command-line tool.

On a machine without a GPU, importing TensorFlow and running its first op
log a screen of C++ lines, one of them `E0000 ... failed call to cuInit:
... CUDA error`, which reads like a failure of the command. TensorFlow
reads `TF_CPP_MIN_LOG_LEVEL` once, when Keras imports it, so the package's
`__init__` asks `started_from_command_line()` before its first import of
Keras. The cuInit line is logged at ERROR level: only level 3 hides it. A
level the user set is kept, and a program that imports frozen_bn keeps
TensorFlow's defaults.
"""

import os
import sys

VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET = "3"  # FATAL only
COMMAND = "frozen-bn"
PACKAGE = "frozen_bn"


def started_from_command_line():
    """Whether this process is `frozen-bn` or `python -m frozen_bn[.module]`.

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
    module = sys.orig_argv[-len(argv)].removeprefix("-m")
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def quiet(environ=None):
    """Sets `TF_CPP_MIN_LOG_LEVEL` to `QUIET` unless it is set.

    Args:
        environ: The environment to change, a dict; defaults to
            `os.environ`, this process's own.
    """
    environ = os.environ if environ is None else environ
    environ.setdefault(VARIABLE, QUIET)
