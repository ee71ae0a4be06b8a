"""Tests for `frozen_bn._training_arg`: Keras's treatment of `training=False`.

Each fact is checked twice: frozen_bn's probe against the release, and the
release's behaviour itself under `fit()`, on stock layers.
"""

import keras
import numpy as np
import pytest

from frozen_bn import _training_arg, _walk
from frozen_bn._reading import ModelReading
from tests.guide_pattern import (
    HONOURS_TRAINING_FALSE,
    HONOURS_TRAINING_NONE,
    LEAKS_TRAINING_FALSE,
    SPREADS_TRAINING_DEFAULT,
    dropout_rate_in_training,
    guide_model,
    moved_under_fit,
)


def test_probe_matches_the_release():
    assert _training_arg.honours_recorded_training() is HONOURS_TRAINING_FALSE
    assert _training_arg.leaks_recorded_training() is LEAKS_TRAINING_FALSE
    assert _training_arg.honours_recorded_none() is HONOURS_TRAINING_NONE
    assert _training_arg.spreads_training_default() is SPREADS_TRAINING_DEFAULT


def test_probe_leaves_automatic_names_alone():
    _training_arg._training_mode_marks.cache_clear()
    _training_arg._plain_call_marks.cache_clear()
    _training_arg.honours_recorded_none()
    _training_arg.spreads_training_default()
    assert keras.layers.Dense(1).name == "dense"
    assert keras.Sequential().name == "sequential"


def test_fit_runs_the_guide_pattern_as_the_release_says():
    moved = moved_under_fit(guide_model())

    assert moved["before_bn"]
    assert moved["base_bn"] is not HONOURS_TRAINING_FALSE
    assert moved["after_bn"] is not LEAKS_TRAINING_FALSE


def test_leaked_training_false_switches_off_dropout_after_the_call():
    dropped = dropout_rate_in_training(guide_model())

    if LEAKS_TRAINING_FALSE:
        assert dropped == 0.0
    else:
        assert 0.3 < dropped < 0.7


def test_switched_off_by_leak_names_the_layers_after_the_call():
    model = guide_model()

    names = [layer.name for layer in _training_arg.switched_off_by_leak(model)]

    expected = ["after_bn", "after_dropout"]  # not "head", a Dense layer
    assert names == (expected if LEAKS_TRAINING_FALSE else [])


def test_a_recorded_training_true_ends_the_leak():
    inputs = keras.Input((4,))
    base = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    x = base(inputs, training=False)
    x = keras.layers.Dropout(0.5, name="switched_off")(x)
    x = keras.layers.Dropout(0.5, name="always_on")(x, training=True)
    x = keras.layers.Dense(1, name="after_training_true")(x)
    model = keras.Model(inputs, x)

    names = [layer.name for layer in _training_arg.switched_off_by_leak(model)]

    assert names == (["switched_off"] if LEAKS_TRAINING_FALSE else [])


class DefaultsToTraining(keras.layers.Layer):
    """A custom layer whose `call` defaults to `training=True`."""

    def call(self, inputs, training=True):
        return inputs


def served_model(augmentation):
    """`augmentation -> Dense -> BN (moving mean 3) -> Dense`."""
    inputs = keras.Input((4,))
    x = augmentation(inputs)
    x = keras.layers.Dense(4, name="dense")(x)
    bn = keras.layers.BatchNormalization(name="bn")
    x = bn(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
    bn.moving_mean.assign(np.full((4,), 3.0, "float32"))
    return model


def test_a_training_true_default_spreads_as_the_release_says():
    model = served_model(DefaultsToTraining(name="defaults"))
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")

    plain = keras.ops.convert_to_numpy(model(x))
    inference = keras.ops.convert_to_numpy(model(x, training=False))

    assert np.array_equal(plain, inference) is not SPREADS_TRAINING_DEFAULT


@pytest.mark.parametrize(
    "augmentation",
    [
        lambda: DefaultsToTraining(name="defaults"),
        lambda: keras.Sequential(
            [keras.layers.RandomFlip("horizontal", name="defaults")],
            name="augmentation",
        ),
    ],
    ids=["custom_layer", "sequential_random_flip"],
)
def test_plain_call_in_training_mode_names_the_bn_and_its_cause(augmentation):
    model = served_model(augmentation())

    pairs = _training_arg.plain_call_in_training_mode(model)

    names = [(bn.name, cause.name) for bn, cause in pairs]
    assert names == ([("bn", "defaults")] if SPREADS_TRAINING_DEFAULT else [])


def test_a_recorded_training_value_stops_the_spread():
    inputs = keras.Input((4,))
    x = DefaultsToTraining(name="defaults")(inputs)
    x = keras.layers.BatchNormalization(name="base_bn")(x, training=False)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, x)

    assert _training_arg.plain_call_in_training_mode(model) == []


def test_plain_call_skips_frozen_layers():
    model = served_model(DefaultsToTraining(name="defaults"))
    model.get_layer("bn").trainable = False

    assert _training_arg.plain_call_in_training_mode(model) == []


def test_fit_runs_a_recorded_none_as_the_release_says():
    moved = moved_under_fit(guide_model(recorded=None))

    assert moved["before_bn"]
    assert moved["base_bn"] is not HONOURS_TRAINING_NONE
    assert moved["after_bn"] is not HONOURS_TRAINING_NONE


def test_switched_off_by_leak_names_the_layers_a_recorded_none_reaches():
    names = [
        layer.name
        for layer in _training_arg.switched_off_by_leak(
            guide_model(recorded=None)
        )
    ]

    expected = ["base_bn", "after_bn", "after_dropout"]
    assert names == (expected if HONOURS_TRAINING_NONE else [])


def test_walk_tells_a_recorded_none_from_a_missing_argument():
    model = guide_model(recorded=None)

    recorded = {
        call.layer.name: call.training
        for call in ModelReading(model).calls
        if call.node is not None
    }

    assert recorded["base"] is None
    assert recorded["after_bn"] is _walk.NOT_RECORDED
