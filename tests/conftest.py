"""Shared fixtures. The backend comes from `KERAS_BACKEND` (one run each)."""

import keras
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with a fixed seed and the default dtype policy."""
    keras.utils.set_random_seed(1337)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
    keras.utils.clear_session()


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


def all_weights(model):
    """Every variable of `model`, in order, as `(path, numpy array)` pairs."""
    return [(v.path, to_numpy(v)) for v in model.weights]


def assert_weights_bitwise_equal(before, after):
    """Same variables (by their own names) holding bitwise the same values."""

    def names(weights):
        return [path.rsplit("/", 1)[-1] for path, _ in weights]

    assert names(before) == names(after)
    for (path, value), (_, other) in zip(before, after, strict=True):
        assert value.dtype == other.dtype, path
        np.testing.assert_array_equal(other, value, err_msg=path)
