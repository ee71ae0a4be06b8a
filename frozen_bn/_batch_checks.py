"""The checks every batch passes before a model sees it (see `_data`).

Each names the argument the data came as, the batch (counted from 0) and
what was expected against what was received, so that bad data gets
frozen_bn's own error instead of one from deep inside Keras or a backend,
and non-finite values never reach a model whose statistics are measured.
"""

import keras
import numpy as np

# For the dtype of a model input, the kinds of numpy dtype that may feed it
# (Keras casts integers to a float input, as `fit()` does).
_ACCEPTED_KINDS = {"f": "fiub", "c": "fiubc", "i": "iub", "u": "iub", "b": "b"}
_KIND_NAMES = {"f": "float", "c": "complex", "i": "integer", "u": "integer"}


def host(value):
    """`value` as a numpy array (a backend tensor is copied to the host)."""
    if keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value)
    return np.asarray(value)  # numpy, or a tensor of another framework


def numeric(x, name, index, *, preprocessed=None):
    """The arrays of batch `x` as numpy arrays, checked to be numeric.

    Args:
        preprocessed: Whether a preprocessor reads `x` (then strings pass).

    Raises:
        TypeError: an input is not an array of numbers.
    """
    arrays = keras.tree.map_structure(host, x)
    for label, array in _labelled(arrays):
        if array.dtype.kind not in "biufc" and not preprocessed:
            raise TypeError(
                f"Expected each batch of `{name}` to hold arrays of numbers. "
                f"Received: batch {index}{label} of dtype {array.dtype} "
                f"and shape {array.shape}"
            )
    return arrays


def finite(x, name, index):
    """Raises unless every float value of batch `x` is finite.

    Raises:
        ValueError: naming the first value that is NaN or infinite: its
            batch, its position in the batch, and the input it is in.
    """
    for label, array in _labelled(x):
        if array.dtype.kind not in "fc" or _all_finite(array):
            continue
        position = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(
            f"Expected `{name}` to hold finite values only: NaN or infinite "
            "inputs would become NaN statistics. Received: "
            f"{array[position]} in batch {index}{label} at position "
            f"{position} (sample {position[0]} of the batch)"
        )


def _all_finite(array):
    """`np.isfinite(array).all()` in two reductions and no bool array.

    A NaN makes the minimum and maximum NaN; an infinity is one of them.
    """
    if array.size == 0:
        return True
    if array.dtype.kind == "c":
        return _all_finite(array.real) and _all_finite(array.imag)
    return bool(np.isfinite(array.min()) and np.isfinite(array.max()))


def fits(model, x, name, index):
    """Raises unless batch `x` fits the inputs of `model`.

    Checks the number of inputs, and for each its rank, its fixed
    dimensions and the kind of its dtype. A model that declares no inputs
    (a subclassed one) is not checked.

    Raises:
        ValueError: naming the input, expected against received.
    """
    specs = _input_specs(model)
    if not specs:
        return
    for label, spec, array in _paired(model, specs, x, name, index):
        problem = _mismatch(spec, array)
        if problem:
            raise ValueError(
                f"Expected each batch of `{name}` to fit the inputs of "
                f"`model` ({model.name!r}): {problem}. Received: batch "
                f"{index}{label} of shape {array.shape} and dtype "
                f"{array.dtype}"
            )


def _input_specs(model):
    """`(name, shape, dtype)` of each input of `model`, or `None`."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):  # Never called on a tensor.
        return None
    return [
        (
            getattr(t, "name", None),
            tuple(t.shape),
            str(getattr(t.dtype, "name", t.dtype)),
        )
        for t in inputs or ()
    ]


def _paired(model, specs, x, name, index):
    """`(label, spec, array)` for each input, or raises if they differ."""
    if isinstance(x, dict):
        names = [spec[0] for spec in specs]
        missing = [key for key in names if key not in x]
        if not missing:
            return [
                (f" (input {key!r})", spec, x[key])
                for key, spec in zip(names, specs, strict=True)
            ]
        problem = f"inputs named {names}; missing {missing}"
        got = f"keys {sorted(x)}"
    else:
        arrays = keras.tree.flatten(x)
        if len(arrays) == len(specs):
            labels = [f" (input {i})" for i in range(len(arrays))]
            if len(arrays) == 1:
                labels = [""]
            return list(zip(labels, specs, arrays, strict=True))
        problem = (
            f"{len(specs)} input array(s). A list of arrays is the inputs "
            "of a multi-input model, as in `fit()`; pass several batches as "
            "an iterator or a generator"
        )
        got = f"{len(arrays)} arrays"
    raise ValueError(
        f"Expected each batch of `{name}` to fit the inputs of `model` "
        f"({model.name!r}): {problem}. Received: batch {index} with {got}"
    )


def _mismatch(spec, array):
    """What is wrong with `array` as the input `spec`, or `None`."""
    _, shape, dtype = spec
    if not _rank_fits(len(shape), array.shape, shape):
        return f"rank {len(shape)} (shape {_shape_text(shape)})"
    for axis, (want, got) in enumerate(
        zip(shape[1:], array.shape[1:], strict=True)
    ):
        if want is not None and want != got:
            return f"shape {_shape_text(shape)} (axis {axis + 1} is {want})"
    kind = np.dtype(dtype).kind if _is_numpy_dtype(dtype) else None
    if (
        kind in _ACCEPTED_KINDS
        and array.dtype.kind not in _ACCEPTED_KINDS[kind]
    ):
        return f"{_KIND_NAMES.get(kind, dtype)} values ({dtype})"
    return None


def _rank_fits(rank, received_shape, shape):
    """Equal ranks, or off by a trailing axis of 1, which Keras adjusts."""
    got = len(received_shape)
    if got == rank:
        return True
    if got == rank - 1:
        return shape[-1] == 1
    return got == rank + 1 and received_shape[-1] == 1


def _is_numpy_dtype(dtype):
    try:
        np.dtype(dtype)
    except TypeError:
        return False
    return True


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _labelled(x):
    """`(label, array)` for each array of `x`; the label names the input."""
    if not isinstance(x, list | tuple | dict):
        return [("", x)]
    keys = x.keys() if isinstance(x, dict) else range(len(x))
    return [(f" (input {key!r})", x[key]) for key in keys]
