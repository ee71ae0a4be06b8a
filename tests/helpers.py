"""Helpers shared by the test modules: data, weights and statistics.

A plain module (test modules import it; `conftest.py` holds fixtures only).
Everything here works on Keras 3 and on tf_keras models, eager or in TF1
graph mode, through `get_weights()` and `batch_norm_layers`.
"""

import keras
import numpy as np

from frozen_bn import _walk


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


def images(count=32, size=8, seed=0, mean=2.0, std=3.0):
    """`(count, size, size, 3)` float32 images, by default far from BN's
    initial statistics (mean 0, variance 1)."""
    rng = np.random.default_rng(seed)
    return rng.normal(mean, std, (count, size, size, 3)).astype("float32")


def _variable_name(variable):
    # Keras 3 says `path` ("model/bn/gamma"), tf_keras `name` ("bn/gamma:0").
    return getattr(variable, "path", None) or variable.name


def all_weights(model):
    """Every variable of `model`, in order, as `(name, numpy array)` pairs."""
    names = [_variable_name(variable) for variable in model.weights]
    return list(zip(names, model.get_weights(), strict=True))


def assert_weights_bitwise_equal(before, after):
    """Same variables (by their own names) holding bitwise the same values."""

    def names(weights):
        return [name.rsplit("/", 1)[-1] for name, _ in weights]

    assert names(before) == names(after)
    for (name, value), (_, other) in zip(before, after, strict=True):
        assert value.dtype == other.dtype, name
        np.testing.assert_array_equal(other, value, err_msg=name)


def moving_statistics(model):
    """`(moving_mean, moving_variance)` of every BN layer in `model` (or of
    `model` itself, a BN layer), as numpy arrays, in model order."""
    layers = _walk.batch_norm_layers(model)
    if isinstance(model, _walk.batch_norm_classes()):
        layers = [model]
    variables = [v for x in layers for v in (x.moving_mean, x.moving_variance)]
    values = _values(variables)
    return list(zip(values[0::2], values[1::2], strict=True))


def _values(variables):
    if variables and not isinstance(variables[0], keras.Variable):
        import tf_keras  # Works in TF1 graph mode too.

        return tf_keras.backend.batch_get_value(variables)
    return [to_numpy(variable) for variable in variables]


def randomize_batch_norms(model, seed=0):
    """Non-trivial statistics, gamma and beta in every BN layer of `model`."""
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


@keras.saving.register_keras_serializable(package="frozen_bn_tests")
class ConvBlock(keras.layers.Layer):
    """A custom block: its constructor makes its conv and BN layers, so a
    model holding it saves the block's arguments, not its BN layer."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", name="conv")
        self.bn = keras.layers.BatchNormalization(name="bn")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, inputs, training=None):
        return self.bn(self.conv(inputs), training=training)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class Subclassed(keras.Model):
    """A subclassed model: its `call` is Python code, it has no graph."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


def subclassed_model():
    """A built `Subclassed` model on inputs of 3 features."""
    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    return model
