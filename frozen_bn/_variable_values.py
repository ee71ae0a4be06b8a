"""Reads and assigns the values of many variables at once.

The one place that moves variable values in bulk, for Keras 3 variables on
every backend and for tf_keras variables, eager or in TF1 graph mode (where
a variable has no value outside a session: `tf_keras.backend.batch_get_value`
and `batch_set_value` read and write them all in one session run).

On TensorFlow it works on the `tf.Variable` itself (what a Keras 3
variable's `value` is): `keras.ops.convert_to_numpy` and
`keras.Variable.assign` spend about 0.15 ms of Python per variable there,
three to five times the variable's own read or assign, and a callback that
swaps the statistics of 43 layers four times an epoch pays for it 344
times. `tf.Variable.assign` also sets every replica of a variable that a
`tf.distribute` strategy mirrors.

`fingerprint` digests the values, to tell whether variables still hold
what they held: SHA-256 of the bytes on the host, or on TensorFlow a
FarmHash of each variable's bytes computed where the variable lives (in a
compiled function: a quarter of the time, with no copy to the host).
"""

import functools
import hashlib

import keras
import numpy as np

from frozen_bn._runtime import builds_static_graphs


def get(variables):
    """The values of `variables`, as numpy arrays (copies).

    Args:
        variables: Keras 3 variables, or tf_keras (`tf.Variable`) ones.
    """
    variables = list(variables)
    if _in_session(variables):
        import tf_keras

        values = tf_keras.backend.batch_get_value(variables)
        return [np.asarray(value) for value in values]
    tf_variables = _tf_variables(variables)
    if tf_variables is None:
        return [keras.ops.convert_to_numpy(v) for v in variables]
    # Copies: a view of the variable's buffer would see later assigns.
    return [np.array(v.value()) for v in tf_variables]


def snapshot(variables):
    """Copies of the values of `variables`, to `assign` back later.

    Unlike `get`, the copies stay where the variables live (backend tensors
    on their devices, with no round trip through the host), except in TF1
    graph mode, where they are numpy arrays.

    Args:
        variables: Keras 3 variables, or tf_keras (`tf.Variable`) ones.
    """
    variables = list(variables)
    if _in_session(variables):
        return get(variables)
    tf_variables = _tf_variables(variables)
    if tf_variables is None:
        return [keras.ops.copy(v) for v in variables]
    # A tensor read from a variable keeps its value when the variable changes.
    return [v.value() for v in tf_variables]


def assign(variables, values):
    """Sets each of `variables` to its value.

    Args:
        variables: Keras 3 variables, or tf_keras (`tf.Variable`) ones.
        values: One value per variable, of its shape and dtype: a numpy
            array or a tensor of the variables' backend.
    """
    variables = list(variables)
    pairs = list(zip(variables, values, strict=True))
    if _in_session(variables):
        import tf_keras

        tf_keras.backend.batch_set_value(pairs)
        return
    tf_variables = _tf_variables(variables)
    if tf_variables is None:
        for variable, value in pairs:
            variable.assign(value)
        return
    for variable, (_, value) in zip(tf_variables, pairs, strict=True):
        variable.assign(value, read_value=False)


def fingerprint(variables):
    """A digest of the values of `variables`, equal only if bitwise equal.

    Args:
        variables: Keras 3 variables, or tf_keras (`tf.Variable`) ones.

    Returns:
        A `bytes` digest (64 bits per variable on TensorFlow, where two
        different values give the same one with a chance of 2^-64).
    """
    variables = list(variables)
    tf_variables = None if _in_session(variables) else _tf_variables(variables)
    if tf_variables:
        return _tf_fingerprints()(tf_variables).numpy().tobytes()
    digest = hashlib.sha256()
    for value in get(variables):
        digest.update(np.ascontiguousarray(value).data)
    return digest.digest()


@functools.cache
def _tf_fingerprints():
    """A compiled function: the FarmHash64 of each variable's bytes."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def fingerprints(variables):
        return tf.stack(
            [tf.fingerprint(tf.reshape(v, [1, -1]))[0] for v in variables]
        )

    return fingerprints


def _in_session(variables):
    """Whether `variables` are tf_keras's in TF1 graph mode."""
    return (
        bool(variables)
        and not isinstance(variables[0], keras.Variable)
        and builds_static_graphs()
    )


def _tf_variables(variables):
    """The `tf.Variable` behind each variable, or None off TensorFlow."""
    if variables and not isinstance(variables[0], keras.Variable):
        return variables  # tf_keras's
    if keras.backend.backend() != "tensorflow":
        return None
    # Outside an autocast scope, a Keras 3 variable's `value` on TensorFlow
    # is its `tf.Variable`.
    return [variable.value for variable in variables]
