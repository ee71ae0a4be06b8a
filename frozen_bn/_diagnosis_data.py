"""The data `diagnose` runs on: checks `x` and `y`, reads `y` as targets."""

import reprlib

import keras
import numpy as np

from frozen_bn._data import preprocessing


def check_inputs(model, x):
    """Raises unless `x` holds arrays that fit the inputs of `model`.

    Returns:
        The number of samples in `x`.
    """
    arrays = keras.tree.flatten(x)
    if not arrays or not all(
        hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays
    ):
        raise TypeError(
            "Expected `x` to be a numpy array or a list/dict of them. "
            f"Received: x={reprlib.repr(x)} of type {type(x).__name__}"
        )
    # A preprocessor (keras-hub) decides which inputs it takes.
    preprocessed = preprocessing(model) is not None
    expected = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
    received = [tuple(a.shape) for a in arrays]
    if expected and not preprocessed and not _shapes_fit(expected, received):
        raise ValueError(
            f"Expected `x` to fit the inputs of `model` ({model.name!r}), of "
            f"shapes {_shape_text(expected)}. Received: x of shapes "
            f"{_shape_text(received)}"
        )
    return int(arrays[0].shape[0])


def _shapes_fit(expected, received):
    if len(expected) != len(received):
        return False
    return all(
        len(want) == len(got)
        and all(w is None or w == g for w, g in zip(want, got, strict=True))
        for want, got in zip(expected, received, strict=True)
    )


def _shape_text(shapes):
    return ", ".join(str(shape) for shape in shapes)


def check_labels(y, samples):
    """`y` as a numpy array, if it holds one label per sample; else raises."""
    labels = np.asarray(y)
    if labels.ndim == 0 or labels.shape[0] != samples:
        raise ValueError(
            f"Expected `y` to hold one label per sample ({samples}). "
            f"Received: y of shape {labels.shape}"
        )
    return labels


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
