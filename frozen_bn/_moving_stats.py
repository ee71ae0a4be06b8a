"""Reads and writes the moving statistics of BatchNormalization layers.

The one place that moves a BN layer's `moving_mean` and `moving_variance`
between the layer and numpy, for Keras 3 and tf_keras layers alike: tf_keras
variables go through `tf_keras.backend.batch_get_value` and
`batch_set_value`, which also work in TF1 graph mode, where a variable has
no value outside a session.
"""

import keras
import numpy as np


def read(layers):
    """The `(moving_mean, moving_variance)` of each layer, as numpy arrays."""
    values = _get(_variables(layers))
    return list(zip(values[0::2], values[1::2], strict=True))


def write(layers, statistics):
    """Sets each layer's moving statistics, cast to their variables' dtype.

    Args:
        layers: BatchNormalization layers.
        statistics: One `(mean, variance)` pair of arrays per layer, shaped
            like its moving statistics.
    """
    variables = _variables(layers)
    values = [
        np.asarray(value, keras.backend.standardize_dtype(variable.dtype))
        for value, variable in zip(
            [value for pair in statistics for value in pair],
            variables,
            strict=True,
        )
    ]
    pairs = list(zip(variables, values, strict=True))
    if variables and not isinstance(variables[0], keras.Variable):
        import tf_keras

        tf_keras.backend.batch_set_value(pairs)
        return
    for variable, value in pairs:
        variable.assign(value)


def _variables(layers):
    return [
        v
        for layer in layers
        for v in (layer.moving_mean, layer.moving_variance)
    ]


def _get(variables):
    if variables and not isinstance(variables[0], keras.Variable):
        import tf_keras

        return [
            np.asarray(v) for v in tf_keras.backend.batch_get_value(variables)
        ]
    return [keras.ops.convert_to_numpy(variable) for variable in variables]
