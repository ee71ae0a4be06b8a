"""Tests for the package itself: what importing it costs and exports."""

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


def test_public_names_are_exported():
    for name in frozen_bn.__all__:
        assert getattr(frozen_bn, name) is not None, name
    assert "BatchNormalization" in frozen_bn.__all__


def test_package_is_typed():
    package_dir = os.path.dirname(frozen_bn.__file__)
    assert os.path.isfile(os.path.join(package_dir, "py.typed"))
