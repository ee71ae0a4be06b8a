"""Reads and writes the moving statistics of BatchNormalization layers.

The one place that moves a BN layer's `moving_mean` and `moving_variance`
between the layer and numpy, for Keras 3 and tf_keras layers alike (through
`_variable_values`, which also works in TF1 graph mode).
"""

import keras
import numpy as np

from frozen_bn import _variable_values


def read(layers):
    """The `(moving_mean, moving_variance)` of each layer, as numpy arrays."""
    values = _variable_values.get(variables(layers))
    return list(zip(values[0::2], values[1::2], strict=True))


def write(layers, statistics):
    """Sets each layer's moving statistics, cast to their variables' dtype.

    Args:
        layers: BatchNormalization layers.
        statistics: One `(mean, variance)` pair of arrays per layer, shaped
            like its moving statistics.
    """
    targets = variables(layers)
    values = [
        np.asarray(value, keras.backend.standardize_dtype(variable.dtype))
        for value, variable in zip(
            [value for pair in statistics for value in pair],
            targets,
            strict=True,
        )
    ]
    _variable_values.assign(targets, values)


def variables(layers):
    """Each layer's `moving_mean` and `moving_variance`, in that order."""
    return [
        v
        for layer in layers
        for v in (layer.moving_mean, layer.moving_variance)
    ]
