"""Tests for `frozen_bn._training_arg`: Keras's treatment of `training=False`.

Each fact is checked twice: frozen_bn's probe against the release, and the
release's behaviour itself under `fit()`, on stock layers.
"""

import keras

from frozen_bn import _training_arg
from tests.guide_pattern import (
    HONOURS_TRAINING_FALSE,
    LEAKS_TRAINING_FALSE,
    dropout_rate_in_training,
    guide_model,
    moved_under_fit,
)


def test_probe_matches_the_release():
    assert _training_arg.honours_recorded_training() is HONOURS_TRAINING_FALSE
    assert _training_arg.leaks_recorded_training() is LEAKS_TRAINING_FALSE


def test_probe_leaves_automatic_names_alone():
    _training_arg._training_mode_marks.cache_clear()
    _training_arg.honours_recorded_training()
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
