"""The data `diagnose` runs on: checks `x` and `y`, reads `y` as targets."""

import math
import reprlib

import keras
import numpy as np

from frozen_bn import _data


def check_inputs(model, x, *, name="x", batch_size=32):
    """Raises unless `x` holds arrays that fit the inputs of `model`.

    Every batch of `x` is checked as `_data.read_batches` checks it:
    numeric, finite, and fitting the model's inputs.

    Returns:
        The number of samples in `x`.

    Raises:
        TypeError: `x` is not a numpy array or a list/dict of them.
        ValueError: `x` is empty, not finite, or does not fit `model`.
    """
    arrays = keras.tree.flatten(_data.arrays_of(x, name))
    _data.check_arrays(model, x, name=name, batch_size=batch_size)
    return int(arrays[0].shape[0])


def check_labels(y, samples):
    """`y` as a numpy array, if it holds one label per sample; else raises.

    Raises:
        TypeError: `y` holds strings or other values that are not numbers:
            which class a string names depends on how the model's outputs
            are ordered, which only the user knows.
        ValueError: `y` does not hold one label per sample.
    """
    labels = np.asarray(y)
    if labels.dtype.kind not in "biuf":
        raise TypeError(
            "Expected `y` to hold numbers: 0/1 labels, class indices or "
            "one-hot rows, in the order of the model's outputs (map string "
            "labels to class indices first, e.g. with "
            "`keras.layers.StringLookup`). Received: y of dtype "
            f"{labels.dtype} and shape {labels.shape}, starting "
            f"{reprlib.repr(labels.ravel()[:3].tolist())}"
        )
    if labels.ndim == 0 or labels.shape[0] != samples:
        raise ValueError(
            f"Expected `y` to hold one label per sample ({samples}). "
            f"Received: y of shape {labels.shape}"
        )
    return labels


def check_targets(model, labels):
    """Raises as `targets` does, if the outputs of `model` are known.

    So that labels that do not fit the model fail before a pass over the
    data, not after it (a subclassed model's outputs are known only then).
    """
    units = _output_units(model)
    if units is not None:
        targets(labels, units)


def _output_units(model):
    """The number of outputs per sample of `model`, or `None` if unknown."""
    try:
        shapes = [tuple(output.shape)[1:] for output in model.outputs]
    except (AttributeError, ValueError):  # Never called on a tensor.
        return None
    if not shapes or None in (d for shape in shapes for d in shape):
        return None
    return sum(math.prod(shape) for shape in shapes)


def targets(labels, units):
    """The task and its integer targets, for a model with `units` outputs.

    Args:
        labels: The labels from `check_labels`: 0/1 for one output, class
            indices or one-hot rows for several.
        units: The number of outputs per sample.

    Returns:
        `("binary", 0/1 targets)` for one output, else `("multiclass",
        class indices)`.
    """
    if units == 1:
        target = labels.reshape(len(labels), -1)
        if target.shape[1] != 1 or not np.isin(target, (0, 1)).all():
            raise ValueError(
                "Expected `y` to hold 0/1 labels for a model with one "
                f"output. Received: y with values {np.unique(target)[:10]}"
            )
        return "binary", target[:, 0].astype(int)
    return "multiclass", _class_indices(labels, units)


def _class_indices(labels, classes):
    if labels.ndim == 2 and labels.shape[1] == classes:
        return np.argmax(labels, axis=1)
    indices = labels.reshape(-1)
    if (
        labels.ndim > 2
        or indices.size != labels.shape[0]
        or not np.all(np.mod(indices, 1) == 0)
        or indices.min() < 0
        or indices.max() >= classes
    ):
        raise ValueError(
            f"Expected `y` to hold class indices in [0, {classes}) or "
            f"one-hot rows of {classes} for a model with {classes} outputs. "
            f"Received: y of shape {labels.shape}"
        )
    return indices.astype(int)
