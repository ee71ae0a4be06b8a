"""Bulk reads, snapshots, assigns and fingerprints of a model's variables."""

import keras
import numpy as np

from frozen_bn import _variable_values
from tests.helpers import all_weights, assert_weights_bitwise_equal


def mobilenet():
    return keras.applications.MobileNet(
        weights=None, input_shape=(32, 32, 3), alpha=0.25, classes=4
    )


def one_ulp_up(variable):
    """`variable`'s value with its first element moved to the next float."""
    value = keras.ops.convert_to_numpy(variable).copy()
    flat = value.reshape(-1)
    flat[0] = np.nextafter(flat[0], np.inf)
    return value


def test_get_and_assign_round_trip_bitwise():
    model = mobilenet()
    before = all_weights(model)
    values = _variable_values.get(model.weights)
    for value, (_, expected) in zip(values, before, strict=True):
        np.testing.assert_array_equal(value, expected)
    _variable_values.assign(model.weights, [v + 1 for v in values])
    assert not np.array_equal(model.get_weights()[0], before[0][1])
    _variable_values.assign(model.weights, values)
    assert_weights_bitwise_equal(before, all_weights(model))


def test_snapshot_keeps_its_values_when_the_variables_change():
    model = mobilenet()
    before = all_weights(model)
    saved = _variable_values.snapshot(model.weights)
    _variable_values.assign(
        model.weights, [np.zeros(v.shape, v.dtype) for v in model.weights]
    )
    _variable_values.assign(model.weights, saved)
    assert_weights_bitwise_equal(before, all_weights(model))


def test_fingerprint_changes_with_one_ulp_of_one_variable():
    model = mobilenet()
    variables = model.trainable_variables
    original = _variable_values.fingerprint(variables)
    assert isinstance(original, bytes)
    assert _variable_values.fingerprint(variables) == original
    last = variables[-1]
    kept = keras.ops.convert_to_numpy(last)
    last.assign(one_ulp_up(last))
    assert _variable_values.fingerprint(variables) != original
    last.assign(kept)
    assert _variable_values.fingerprint(variables) == original


def test_fingerprint_follows_which_variable_holds_which_value():
    model = mobilenet()
    batch_norm = model.get_layer("conv1_bn")
    variables = [batch_norm.gamma, batch_norm.beta]  # Ones and zeros.
    original = _variable_values.fingerprint(variables)
    _variable_values.assign(variables, _variable_values.get(variables)[::-1])
    assert _variable_values.fingerprint(variables) != original
