"""Iterates over the data forms that `fit()` accepts, one batch at a time."""

import math

import keras
import numpy as np

from frozen_bn._checks import check_positive_int


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _inputs_of(element):
    """The model inputs of a batch: `x` of an `(x, y)` or `(x, y, w)` tuple."""
    return element[0] if isinstance(element, tuple) else element


def _slice_batches(x, batch_size):
    first = keras.tree.flatten(x)[0]
    count = int(first.shape[0])
    for start in range(0, count, batch_size):
        window = slice(start, start + batch_size)
        yield keras.tree.map_structure(lambda a, w=window: a[w], x)


def _known_length(data, batch_size):
    if _is_array(keras.tree.flatten(_inputs_of(data))[0]):
        count = int(keras.tree.flatten(_inputs_of(data))[0].shape[0])
        return math.ceil(count / batch_size)
    try:
        length = len(data)
    except TypeError:
        return None
    return length if length >= 0 else None


def preprocessing(model):
    """The per-batch preprocessing that `fit()` applies to `model`'s data.

    A keras-hub task (`keras_hub.models.Task`, e.g. an `ImageClassifier`)
    preprocesses each batch with its `preprocessor` in `fit()`, `evaluate()`
    and `predict()`, through its `preprocess_samples(x, y, sample_weight)`
    method, but not when it is called directly: `model(x)` takes inputs
    that are already preprocessed. A pass that calls the model itself must
    apply it.

    Returns:
        A function from a batch's inputs to the model's inputs (numpy), or
        `None` for a model without preprocessing.
    """
    preprocess_samples = getattr(model, "preprocess_samples", None)
    if getattr(model, "preprocessor", None) is None or not callable(
        preprocess_samples
    ):
        return None

    def preprocess(x):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(preprocess_samples(x))
        return keras.tree.map_structure(_host, x)

    return preprocess


def _host(value):
    if keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value)
    return np.asarray(value)  # numpy, or a tf tensor on another backend


def iter_input_batches(data, *, batch_size=32, steps=None, preprocess=None):
    """Yields the model inputs of each batch in `data`.

    Args:
        data: A numpy array (or a list/dict of them for a multi-input
            model), an `(x, y)` or `(x, y, sample_weight)` tuple of those, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, or any iterable
            (e.g. a generator) of batches. Batched forms yield `x`, `(x, y)`
            or `(x, y, sample_weight)` per batch; only `x` is used.
        batch_size: Batch size used to slice arrays; ignored for forms that
            are already batched.
        steps: If given, stop after this many batches.
        preprocess: If given, a function applied to each batch's inputs, as
            returned by `preprocessing(model)`.

    Returns:
        A pair `(batches, count)`: an iterator over input batches and the
        number of batches it yields, or `None` if that is unknown.
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    steps = check_positive_int(steps, "steps", allow_none=True)
    count = _known_length(data, batch_size)
    if steps is not None:
        count = steps if count is None else min(count, steps)
    return _batches(data, batch_size, count, preprocess), count


def _batches(data, batch_size, count, preprocess):
    inputs = _inputs_of(data)
    if _is_array(keras.tree.flatten(inputs)[0]):
        source = _slice_batches(inputs, batch_size)
    elif isinstance(data, keras.utils.PyDataset):
        source = (data[index] for index in range(len(data)))
    else:
        source = iter(data)
    for index, element in enumerate(source):
        if count is not None and index >= count:
            return
        x = keras.tree.map_structure(np.asarray, _inputs_of(element))
        yield x if preprocess is None else preprocess(x)
