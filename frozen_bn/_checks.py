"""The argument validators every public function shares.

Each takes the value and the name of the argument it was passed as, and
returns the value to use (normalized where the argument has several
spellings), so that a call site is one line and every error reads alike:
``Expected `name` to be ... Received: name=...``.
"""

import difflib
import math
import numbers
import os
import reprlib

import keras
import numpy as np

from frozen_bn import _walk
from frozen_bn._runtime import is_tf_keras_model


def check_model(value, name="model", *, keras3_only=False, graph=False):
    """Returns `value` if it is a built model of the kind asked for.

    Args:
        value: The argument to check.
        name: The argument's name, for the error message.
        keras3_only: If `True`, a tf_keras model is refused.
        graph: If `True`, only a Functional or Sequential model is accepted
            (a subclass of Functional, such as a keras-hub backbone,
            included): the caller reads or rewrites its graph.

    Returns:
        `value`.

    Raises:
        TypeError: `value` is not a model of the accepted Kerases.
        ValueError: `value` is not a graph model where one is needed, or is
            not built (it has no weights or statistics yet).
    """
    accepted = isinstance(value, keras.Model) or (
        not keras3_only and is_tf_keras_model(value)
    )
    if not accepted:
        kind = (
            "keras.Model"
            if keras3_only
            else "keras.Model (or a tf_keras Model)"
        )
        raise TypeError(
            f"Expected `{name}` to be a {kind}. {received(name, value)}"
        )
    if graph and not (
        isinstance(value, keras.Sequential) or _walk.graph_nodes(value)
    ):
        raise ValueError(
            f"Expected `{name}` to be a Functional or Sequential model: a "
            "subclassed model has no graph, its `call` is Python code. "
            + received(name, value)
        )
    if not value.built:
        raise ValueError(
            f"Expected `{name}` to be built: it has no weights or statistics "
            "yet. Build it first: call it on a batch of data, call "
            f"`{name}.build(input_shape)`, or start a Sequential model with "
            f"`keras.Input(shape)`. {received(name, value)}"
        )
    return value


def check_bool(value, name):
    """Returns `value` as a bool if it is one (`numpy.bool_` included).

    Raises:
        TypeError: `value` is anything else: a truthy `"no"` or `1` is not
            taken for `True`.
    """
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"Expected `{name}` to be a bool. {received(name, value)}"
        )
    return bool(value)


def check_positive_int(value, name, *, allow_none=False):
    """Returns `value` as an int if it is an integer >= 1 (or `None`).

    Python and numpy integers are accepted (`np.int64(8)`); bools are not.

    Raises:
        TypeError: `value` is not an integer.
        ValueError: `value` is an integer below 1.
    """
    if value is None and allow_none:
        return value
    kind = "a positive integer" + (" or None" if allow_none else "")
    if not _is_integer(value):
        raise TypeError(
            f"Expected `{name}` to be {kind}. {received(name, value)}"
        )
    if value < 1:
        raise ValueError(
            f"Expected `{name}` to be {kind}. Received: {name}={value!r}"
        )
    return int(value)


def check_positive_number(value, name, *, allow_none=False):
    """Returns `value` as a float if it is a finite number > 0 (or `None`).

    Raises:
        TypeError: `value` is not a real number (a bool is not one).
        ValueError: `value` is not finite or not above 0.
    """
    if value is None and allow_none:
        return value
    kind = "a positive number" + (" or None" if allow_none else "")
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, numbers.Real
    ):
        raise TypeError(
            f"Expected `{name}` to be {kind}. {received(name, value)}"
        )
    if not math.isfinite(value) or value <= 0:
        raise ValueError(
            f"Expected `{name}` to be {kind}. Received: {name}={value!r}"
        )
    return float(value)


def check_verbose(value, name="verbose"):
    """`fit()`'s `verbose`: "auto" (same as 1), 0, 1 or 2; returns an int.

    Raises:
        ValueError: `value` is anything else, a bool included.
    """
    if isinstance(value, str) and value == "auto":
        return 1
    if not _is_integer(value) or value not in (0, 1, 2):
        raise ValueError(
            f'Expected `{name}` to be "auto", 0, 1 or 2. '
            f"Received: {name}={value!r}"
        )
    return int(value)


def check_one_of(value, name, choices, where=""):
    """Returns `value` if it is one of `choices` (strings or numbers).

    `where` qualifies the choices in the message (" on the jax backend").

    Raises:
        TypeError: `value` is of none of the choices' types.
        ValueError: `value` is of their type but none of them.
    """
    listed = ", ".join(map(repr, choices))
    message = f"Expected `{name}` to be one of {listed}{where}. "
    if choices and not any(type(value) is type(c) for c in choices):
        raise TypeError(message + received(name, value))
    if value not in choices:
        raise ValueError(message + f"Received: {name}={_REPR.repr(value)}")
    return value


def check_path(value, name, *, allow_none=False):
    """Returns `value` as a str if it is a str or an `os.PathLike` (or `None`).

    Raises:
        TypeError: `value` is anything else.
    """
    if value is None and allow_none:
        return value
    if not isinstance(value, str | os.PathLike):
        kind = "a str or os.PathLike" + (" or None" if allow_none else "")
        raise TypeError(
            f"Expected `{name}` to be {kind}. {received(name, value)}"
        )
    return os.fspath(value)


def check_keywords(kwargs, accepted, where=""):
    """Returns `kwargs` if every keyword is one of `accepted`.

    `where` says what takes them (" by `model.export` for format='onnx'").

    Raises:
        TypeError: naming the first keyword that is not accepted, as Python
            does for an unexpected keyword argument.
    """
    for keyword in kwargs:
        if keyword not in accepted:
            close = difflib.get_close_matches(keyword, list(accepted))
            hint = f" Did you mean {' or '.join(map(repr, close))}?" * bool(
                close
            )
            raise TypeError(
                f"Unexpected keyword argument `{keyword}`: the keywords "
                f"accepted{where} are {sorted(accepted)}.{hint} Received: "
                f"{keyword}={_REPR.repr(kwargs[keyword])}"
            )
    return kwargs


def check_rule_result(result, name, layer):
    """Returns what the callable `name` returned for `layer`, if a bool.

    Raises:
        TypeError: the callable returned anything else.
    """
    if not isinstance(result, bool | np.bool_):
        raise TypeError(
            f"Expected the `{name}` callable to return a bool. Received: "
            f"{_REPR.repr(result)} of type {type(result).__name__} for "
            f"layer {layer.name!r}"
        )
    return bool(result)


def check_layer_index(value, name, model):
    """`model.layers[value]` for an integer `value` (negative from the end).

    Raises:
        ValueError: `value` is not an index into `model.layers`.
    """
    count = len(model.layers)
    if not -count <= value < count:
        raise ValueError(
            f"Expected `{name}` to be an index into `model.layers`, from "
            f"{-count} to {count - 1} ({model.name!r} has {count} layers). "
            f"Received: {name}={value!r}"
        )
    return model.layers[int(value)]


def check_layer_choice(value, name, layers, kind):
    """The layers among `layers` that `value` names, in the order named.

    Args:
        value: A layer or a layer name, or an iterable of them.
        name: The argument's name, for the error message.
        layers: The layers that may be chosen.
        kind: What they are, e.g. "BatchNormalization layers of `model`".

    Raises:
        ValueError: `value` names a layer that is not among `layers`.
    """
    by_name = {layer.name: layer for layer in layers}
    by_id = {id(layer): layer for layer in layers}
    items = value
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        items = [value]
    chosen = []
    for item in items:
        match = (
            by_name.get(item) if isinstance(item, str) else by_id.get(id(item))
        )
        if match is None:
            close = difflib.get_close_matches(str(item), list(by_name))
            hint = f" Did you mean {' or '.join(map(repr, close))}?" * bool(
                close
            )
            raise ValueError(
                f"Expected `{name}` to hold {kind} (or their names). "
                f"Received: {name}={_REPR.repr(value)}, where {item!r} is "
                f"not one.{hint} They are: {sorted(by_name)}"
            )
        chosen.append(match)
    return chosen


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(
        value, bool | np.bool_
    )


# A received value is echoed whole unless it is long (a big list or array).
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 160


def received(name, value):
    return (
        f"Received: {name}={_REPR.repr(value)} of type {type(value).__name__}"
    )
