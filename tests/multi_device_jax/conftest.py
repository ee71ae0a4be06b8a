"""Runs these tests on two JAX CPU devices under `DataParallel`.

JAX reads `XLA_FLAGS=--xla_force_host_platform_device_count=2` when it
starts, so the flag (and `KERAS_BACKEND=jax`) must be in the environment of
the process: `scripts/run_tests.py` runs this directory in its own process
("multi-device-jax" suite) and leaves it out of the per-backend runs. In a
process without two JAX devices, its tests are not collected.
"""

import keras
import pytest

from tests.multi_device_models import DEVICE_COUNT

if (
    keras.backend.backend() != "jax"
    or len(keras.distribution.list_devices()) != DEVICE_COUNT
):
    # Run as its own suite: `python scripts/run_tests.py multi-device-jax`.
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def distribution():
    """Data parallelism over both CPU devices; use it with `.scope()`."""
    return keras.distribution.DataParallel(
        devices=keras.distribution.list_devices()
    )
