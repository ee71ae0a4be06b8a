"""Shared fixtures. The backend comes from `KERAS_BACKEND` (one run each).

The directories of `SEPARATE_PROCESS` set up their whole process when
collected (TF1 graph mode, a number of devices, worker processes), and its
files run subprocesses that need no backend of their own: each runs only
when asked for by name, as `scripts/run_tests.py` runs it, so
that `pytest tests/` runs every other test as it should.
"""

import pathlib

import keras
import pytest

HERE = pathlib.Path(__file__).parent
SEPARATE_PROCESS = (
    "graph_mode",
    "multi_device_tf",
    "multi_device_jax",
    "multi_worker_tf",
    "multi_worker_jax",
    # The docs' pages and the examples, each run in a subprocess of its own
    # on TensorFlow: once is enough (the `docs` suite), not once per backend.
    "test_docs.py",
    "test_examples.py",
)


def pytest_ignore_collect(collection_path, config):
    """Leaves out a `SEPARATE_PROCESS` directory or file not named on the
    command line."""
    if collection_path.parent != HERE:
        return None
    if collection_path.name not in SEPARATE_PROCESS:
        return None
    asked = [pathlib.Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not any(path.is_relative_to(collection_path) for path in asked)


def pytest_report_header(config):
    return (
        f"tests/{{{','.join(SEPARATE_PROCESS)}}} run only when named: "
        "python scripts/run_tests.py lists their suites"
    )


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a fixed seed and the default dtype policy."""
    keras.utils.set_random_seed(1337)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()
