"""Tests for the package itself: what importing it costs and exports."""

import inspect
import os
import subprocess
import sys

import frozen_bn


def optional_modules_loaded_by(statement):
    """The optional heavy modules a new interpreter has after `statement`."""
    code = (
        f"import sys; {statement}; "
        "print(' '.join(m for m in ('tf_keras', 'matplotlib', 'sklearn') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(loaded.stdout.split())


def test_import_loads_nothing_beyond_keras():
    # Keras itself imports matplotlib and sklearn when they are installed;
    # frozen_bn must add nothing to that, and never tf_keras.
    with_keras = optional_modules_loaded_by("import keras")
    with_frozen_bn = optional_modules_loaded_by("import frozen_bn")
    assert with_frozen_bn == with_keras
    assert "tf_keras" not in with_frozen_bn


def test_all_lists_exactly_the_public_names():
    # What `import frozen_bn` defines that is not a module or private.
    defined = {
        name
        for name, value in vars(frozen_bn).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert sorted(frozen_bn.__all__) == sorted(defined | {"__version__"})
    for name in defined:
        assert getattr(frozen_bn, name).__module__.startswith("frozen_bn.")


def test_package_is_typed():
    package_dir = os.path.dirname(frozen_bn.__file__)
    assert os.path.isfile(os.path.join(package_dir, "py.typed"))
