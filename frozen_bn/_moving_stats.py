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
    """Sets each layer's moving statistics, all of them or none.

    Every value is checked finite, and cast to its variable's dtype (where
    it must stay finite too), before the first is assigned; if assigning
    fails part way, the values before are put back.

    Args:
        layers: BatchNormalization layers.
        statistics: One `(mean, variance)` pair of arrays per layer, shaped
            like its moving statistics.

    Raises:
        ValueError: a value is NaN or infinite, or becomes infinite in its
            variable's dtype; no statistic was written.
    """
    targets = variables(layers)
    pairs = zip(
        [value for pair in statistics for value in pair], targets, strict=True
    )
    with np.errstate(over="ignore"):  # An overflow is reported below.
        values = [
            np.asarray(value, keras.backend.standardize_dtype(variable.dtype))
            for value, variable in pairs
        ]
    for position, value in enumerate(values):
        if not np.isfinite(value).all():
            layer = layers[position // 2]
            which = ("mean", "variance")[position % 2]
            raise ValueError(
                f"The {which} measured on `data` for layer {layer.name!r} "
                f"is not finite in {value.dtype} (e.g. "
                f"{value[~np.isfinite(value)][0]}): the layer's inputs are "
                "NaN or overflow, so the model's weights or the data are out "
                "of range. No statistic was written."
            )
    before = _variable_values.snapshot(targets)
    try:
        _variable_values.assign(targets, values)
    except BaseException:
        _variable_values.assign(targets, before)
        raise


def variables(layers):
    """Each layer's `moving_mean` and `moving_variance`, in that order."""
    return [
        v
        for layer in layers
        for v in (layer.moving_mean, layer.moving_variance)
    ]
