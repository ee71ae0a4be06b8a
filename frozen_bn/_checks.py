"""The argument validators every public function shares.

Each takes the value and the name of the argument it was passed as, and
returns the value to use (normalized where the argument has several
spellings), so that a call site is one line and every error reads alike:
``Expected `name` to be ... Received: name=...``.
"""

import reprlib

import keras

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
            f"Expected `{name}` to be a {kind}. {_received(name, value)}"
        )
    if graph and not (
        isinstance(value, keras.Sequential) or _walk.graph_nodes(value)
    ):
        raise ValueError(
            f"Expected `{name}` to be a Functional or Sequential model: a "
            "subclassed model has no graph, its `call` is Python code. "
            + _received(name, value)
        )
    if not value.built:
        raise ValueError(
            f"Expected `{name}` to be built: it has no weights or statistics "
            "yet. Build it first: call it on a batch of data, call "
            f"`{name}.build(input_shape)`, or start a Sequential model with "
            f"`keras.Input(shape)`. {_received(name, value)}"
        )
    return value


def check_bool(value, name):
    """Returns `value` if it is a bool; raises a `TypeError` otherwise."""
    if not isinstance(value, bool):
        raise TypeError(
            f"Expected `{name}` to be a bool. {_received(name, value)}"
        )
    return value


def check_positive_int(value, name, *, allow_none=False):
    """Returns `value` if it is an int >= 1 (or `None`, if allowed).

    Raises:
        ValueError: `value` is anything else, a bool included.
    """
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        kind = "a positive integer" + (" or None" if allow_none else "")
        raise ValueError(
            f"Expected `{name}` to be {kind}. Received: {name}={value!r}"
        )
    return value


def check_verbose(value, name="verbose"):
    """`fit()`'s `verbose`: "auto" (same as 1), 0, 1 or 2; returns an int.

    Raises:
        ValueError: `value` is anything else, a bool included.
    """
    if isinstance(value, str) and value == "auto":
        return 1
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise ValueError(
            f'Expected `{name}` to be "auto", 0, 1 or 2. '
            f"Received: {name}={value!r}"
        )
    return value


# A received value is echoed whole unless it is long (a big list or array).
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 160


def _received(name, value):
    return (
        f"Received: {name}={_REPR.repr(value)} of type {type(value).__name__}"
    )
