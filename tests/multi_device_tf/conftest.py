"""Runs these tests on two logical CPU devices under `MirroredStrategy`.

The devices must be configured before TensorFlow initializes its runtime,
hence here, at collection. `scripts/run_tests.py` runs this directory in its
own process ("multi-device-tf" suite, `KERAS_BACKEND=tensorflow`) and leaves
it out of the per-backend runs. In a process that cannot have the two devices
(another backend, TensorFlow already started), its tests are not collected.
"""

import contextlib

import keras
import pytest

from tests.multi_device_models import DEVICE_COUNT

DEVICES = [f"/cpu:{index}" for index in range(DEVICE_COUNT)]


def _two_logical_cpus():
    """Splits the CPU in two logical devices; whether that worked."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    # A RuntimeError means TensorFlow started already, with its devices.
    with contextlib.suppress(RuntimeError):
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0],
            [tf.config.LogicalDeviceConfiguration()] * len(DEVICES),
        )
    return len(tf.config.list_logical_devices("CPU")) == len(DEVICES)


if not _two_logical_cpus():
    # Run as its own suite: `python scripts/run_tests.py multi-device-tf`.
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def strategy():
    """A `MirroredStrategy` with one replica on each logical CPU.

    One for the whole session: strategies made one after the other in a
    process number their collective ops alike, and TensorFlow then mixes
    up the collectives of different strategies' programs.
    """
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(DEVICES)
