"""Shared fixtures. The backend comes from `KERAS_BACKEND` (one run each)."""

import keras
import numpy as np
import pytest

from frozen_bn import _walk


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


def randomize_batch_norms(model, seed=0):
    """Non-trivial statistics, gamma and beta, so every fold changes weights."""
    rng = np.random.default_rng(seed)
    for bn in _walk.batch_norm_layers(model):
        n = bn.moving_mean.shape[0]
        bn.moving_mean.assign(rng.normal(0.0, 0.5, n))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, n))
        if bn.scale:
            bn.gamma.assign(rng.uniform(0.5, 1.5, n))
        if bn.center:
            bn.beta.assign(rng.normal(0.0, 0.5, n))
    return model
