"""Reads the data forms that `fit()` accepts, one checked batch at a time.

The one reader of data in frozen_bn: `recalibrate`, `diagnose`,
`cache_features` and the callbacks all read through `read_batches`, so each
form means the same on every backend and on tf_keras. `adapter_for` decides
once how a form is read, and each form is one small adapter with the same
two members (`count` and `batches()`):

- arrays (`_ArrayAdapter`): a numpy array or tensor, a list or dict of them
  (the inputs of a multi-input model, as `fit(x=[a, b])` reads them), or a
  tuple `(x, y)` or `(x, y, sample_weight)` of those; sliced into batches
  of `batch_size`;
- a `keras.utils.PyDataset` (`_PyDatasetAdapter`): indexed batch by batch;
- any other iterable (`_IterableAdapter`): a `tf.data.Dataset`, a
  generator, a torch `DataLoader`, a list of batches; each element is a
  batch read as `fit()` reads one: `x`, or `(x, y)`, `(x, y, sample_weight)`
  as a tuple or a list.

Every batch is then checked (`_batch_checks`): numeric, finite, and fitting
the model's inputs (rank, fixed dimensions, dtype kind), before the model
sees it.
"""

import itertools
import math
import os
import reprlib
import sys

import keras

from frozen_bn import _batch_checks
from frozen_bn._checks import check_positive_int, received

FORMS = (
    "a numpy array (or a list/dict of them for a multi-input model), an "
    "`(x, y)` or `(x, y, sample_weight)` tuple of those, a "
    "`tf.data.Dataset`, a `keras.utils.PyDataset`, or any other iterable "
    "of batches (a generator, a torch `DataLoader`)"
)

# The `count` of an adapter whose data says it never ends.
ENDLESS = math.inf


def read_batches(
    model, data, *, name="data", batch_size=32, steps=None, steps_name="steps"
):
    """The checked model inputs of each batch of `data`, as numpy arrays.

    Args:
        model: The Keras 3 or tf_keras model the batches are for: a
            keras-hub task's preprocessor runs on each (see
            `preprocessing`), and each is checked against its inputs.
        data: Any form of the module docstring.
        name: The argument `data` was passed as, for error messages.
        batch_size: Batch size used to slice arrays; ignored for forms that
            are already batched.
        steps: If given, stop after this many batches.
        steps_name: The argument `steps` is passed as, for the error on
            endless data; `None` where the caller has none.

    Returns:
        A pair `(batches, count)`: an iterator over input batches and the
        number of batches it yields, or `None` if that is unknown. The
        iterator raises a `ValueError` if `data` yields no batch, or a batch
        that is not finite or does not fit `model`.

    Raises:
        TypeError: `data` is of no accepted form.
        ValueError: `data` is endless and `steps` is `None`.
    """
    steps = check_positive_int(steps, "steps", allow_none=True)
    adapter = adapter_for(
        data, name, batch_size, steps=steps, steps_name=steps_name
    )
    count = adapter.count
    if steps is not None:
        count = steps if count is None else min(count, steps)
    return _checked(model, adapter, name, count), count


def adapter_for(data, name, batch_size=32, *, steps=None, steps_name="steps"):
    """The adapter that reads the form of `data`.

    Args:
        steps: The number of batches the caller reads, or `None` for all.
        steps_name: The argument that gives `steps`, or `None` if the
            caller has none: said in the error on endless data.

    Raises:
        TypeError: `data` is `None`, a path, or of no accepted form.
        ValueError: `data` holds arrays without a batch axis, or says it
            never ends (an infinite `tf.data.Dataset`, a `PyDataset` with
            `num_batches=None`) and `steps` is `None`.
    """
    adapter = _adapter(data, name, batch_size)
    if adapter.count is ENDLESS and steps is None:
        hint = (
            f"Pass `{steps_name}`, the number of batches to read"
            if steps_name
            else "Pass a part of it that ends (e.g. `dataset.take(n)`)"
        )
        raise ValueError(
            f"Expected `{name}` to end: it declares that it yields batches "
            f"forever, so it would be read forever. {hint}. Received: "
            f"{name} of type {type(data).__name__}, whose "
            f"{_ENDLESS_SIGNS[type(adapter)]}"
        )
    return adapter


def _adapter(data, name, batch_size):
    batch_size = check_positive_int(batch_size, "batch_size")
    if data is None or isinstance(data, str | bytes | os.PathLike):
        hint = (
            " A path is not data: load the file first (e.g. `numpy.load`)."
            if data is not None
            else ""
        )
        raise TypeError(
            f"Expected `{name}` to be {FORMS}.{hint} " + received(name, data)
        )
    if _is_arrays(data) or (
        isinstance(data, tuple) and 1 <= len(data) <= 3 and _is_arrays(data[0])
    ):
        return _ArrayAdapter(data, name, batch_size)
    if isinstance(data, keras.utils.PyDataset):
        return _PyDatasetAdapter(data)
    if hasattr(data, "__iter__"):
        return _IterableAdapter(data)
    raise TypeError(f"Expected `{name}` to be {FORMS}. " + received(name, data))


def check_arrays(model, data, *, name="data", batch_size=32, steps=None):
    """Checks every batch of array data as `read_batches` would, at once.

    Arrays cost nothing to check before a pass, so that a callback fails
    when training starts rather than after an epoch. Other forms are read
    once per pass and checked then.
    """
    if isinstance(_adapter(data, name, batch_size), _ArrayAdapter):
        batches, _ = read_batches(
            model, data, name=name, batch_size=batch_size, steps=steps
        )
        for _ in batches:
            pass


def arrays_of(data, name):
    """The model inputs of array data (`x` of a tuple), checked to be arrays.

    Raises:
        TypeError: `data` is not array data.
    """
    adapter = _adapter(data, name, batch_size=32)
    if not isinstance(adapter, _ArrayAdapter):
        raise TypeError(
            f"Expected `{name}` to be a numpy array or a list/dict of them. "
            + received(name, data)
        )
    return adapter.x


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _is_arrays(value):
    """An array, or a non-empty list or dict of arrays: a model's inputs."""
    if isinstance(value, list | dict):
        items = value.values() if isinstance(value, dict) else value
        return bool(value) and all(map(_is_array, items))
    return _is_array(value)


class _ArrayAdapter:
    """Arrays sliced into batches; a tuple is `(x, y[, sample_weight])`."""

    def __init__(self, data, name, batch_size):
        self.data = data
        self.x = data[0] if isinstance(data, tuple) else data
        self.batch_size = batch_size
        arrays = keras.tree.flatten(self.x)
        scalars = [a for a in arrays if len(a.shape) == 0]
        if scalars:
            raise ValueError(
                f"Expected the arrays of `{name}` to have a batch axis: one "
                "row per sample, as `fit()` reads them. Received: "
                f"{name} with an array of shape () (a scalar: "
                f"{reprlib.repr(_batch_checks.host(scalars[0]).item())})"
            )
        lengths = {int(a.shape[0]) for a in arrays}
        if len(lengths) != 1:
            raise ValueError(
                f"Expected the arrays of `{name}` to hold the same number of "
                f"samples. Received: {name} with {sorted(lengths)} samples"
            )
        self.samples = lengths.pop()
        self.count = math.ceil(self.samples / batch_size)

    def batches(self):
        for start in range(0, self.samples, self.batch_size):
            window = slice(start, start + self.batch_size)
            yield keras.tree.map_structure(lambda a, w=window: a[w], self.x)


class _PyDatasetAdapter:
    """A `keras.utils.PyDataset`, indexed batch by batch.

    Its `num_batches` (`len()` by default) is `None` if it never ends.
    """

    def __init__(self, data):
        self.data = data
        count = data.num_batches
        self.count = ENDLESS if count is None else count

    def batches(self):
        endless = self.count is ENDLESS
        for index in itertools.count() if endless else range(self.count):
            yield _inputs_of(self.data[index])


class _IterableAdapter:
    """Any other iterable of batches; its length is used when it has one."""

    def __init__(self, data):
        self.data = data
        try:
            self.count = len(data)
        except TypeError:  # A generator, an infinite tf.data.Dataset.
            self.count = ENDLESS if _is_infinite_dataset(data) else None

    def batches(self):
        for element in self.data:
            yield _inputs_of(element)


# How each form says that it never ends.
_ENDLESS_SIGNS = {
    _PyDatasetAdapter: "`num_batches` is None",
    _IterableAdapter: "`cardinality()` is `tf.data.INFINITE_CARDINALITY`",
}


def _is_infinite_dataset(data):
    """Whether `data` is a `tf.data.Dataset` that says it never ends."""
    tf = sys.modules.get("tensorflow")  # Not imported: not a tf.data one.
    return (
        tf is not None
        and isinstance(data, tf.data.Dataset)
        and int(data.cardinality()) == tf.data.INFINITE_CARDINALITY
    )


def _inputs_of(element):
    """The `x` of a batch, as `fit()` unpacks it (a list counts as a tuple)."""
    return keras.utils.unpack_x_y_sample_weight(element)[0]


def _checked(model, adapter, name, count):
    preprocess = preprocessing(model)
    index = -1
    for index, x in enumerate(itertools.islice(adapter.batches(), count)):
        x = _batch_checks.numeric(x, name, index, preprocessed=preprocess)
        _batch_checks.finite(x, name, index)
        if preprocess is not None:
            x = preprocess(x)
        _batch_checks.fits(model, x, name, index)
        yield x
    if index < 0:
        raise ValueError(
            f"Expected `{name}` to yield at least one batch. "
            + received(name, adapter.data)
        )


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
        return keras.tree.map_structure(_batch_checks.host, x)

    return preprocess
