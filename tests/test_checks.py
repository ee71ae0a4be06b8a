"""Tests for the argument validators of `frozen_bn._checks`."""

import re

import keras
import numpy as np
import pytest

from frozen_bn import _checks
from tests.helpers import subclassed_model


def functional_model():
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


# check_model


def test_check_model_returns_the_model():
    model = functional_model()
    assert _checks.check_model(model) is model
    assert _checks.check_model(model, keras3_only=True, graph=True) is model


def test_check_model_accepts_a_built_subclassed_model():
    model = subclassed_model()
    assert _checks.check_model(model) is model


def test_check_model_rejects_a_non_model():
    with pytest.raises(
        TypeError,
        match=r"^Expected `model` to be a keras\.Model \(or a tf_keras "
        r"Model\)\. Received: model='model\.keras' of type str$",
    ):
        _checks.check_model("model.keras")


def test_check_model_keras3_only_names_the_argument():
    with pytest.raises(
        TypeError,
        match=r"^Expected `base` to be a keras\.Model\. "
        r"Received: base=\[1, 2\] of type list$",
    ):
        _checks.check_model([1, 2], "base", keras3_only=True)


def test_check_model_shortens_a_long_value():
    with pytest.raises(TypeError, match=r"Received: model=\[0, 1, .*\.\.\.\]"):
        _checks.check_model(list(range(1000)))


def test_check_model_rejects_a_layer():
    with pytest.raises(TypeError, match=r"of type Dense$"):
        _checks.check_model(keras.layers.Dense(2))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf_keras needs TF"
)
def test_check_model_keras3_only_rejects_a_tf_keras_model():
    tf_keras = pytest.importorskip("tf_keras")
    inputs = tf_keras.Input((3,))
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(2)(inputs))
    assert _checks.check_model(model) is model
    with pytest.raises(
        TypeError, match=r"^Expected `model` to be a keras\.Model\. Received"
    ):
        _checks.check_model(model, keras3_only=True)


def test_check_model_graph_rejects_a_subclassed_model():
    with pytest.raises(
        ValueError,
        match=r"^Expected `model` to be a Functional or Sequential model: a "
        r"subclassed model has no graph, its `call` is Python code\. "
        r"Received: model=.* of type Subclassed$",
    ):
        _checks.check_model(subclassed_model(), graph=True)


def test_check_model_graph_accepts_a_built_sequential():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert _checks.check_model(model, graph=True) is model


def test_check_model_rejects_an_unbuilt_model():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(
        ValueError,
        match=r"^Expected `head` to be built: it has no weights or statistics "
        r"yet\. .*call `head\.build\(input_shape\)`.* Received: head=.* of "
        r"type Sequential$",
    ):
        _checks.check_model(model, "head", graph=True)


# check_bool


def test_check_bool_returns_the_bool():
    assert _checks.check_bool(False, "flag") is False


def test_check_bool_accepts_a_numpy_bool():
    assert _checks.check_bool(np.bool_(True), "flag") is True


@pytest.mark.parametrize("value", [1, None, "yes", "no", np.int64(0)])
def test_check_bool_rejects_other_values(value):
    with pytest.raises(
        TypeError,
        match=r"^Expected `freeze_moving_stats` to be a bool\. "
        rf"Received: freeze_moving_stats=.* of type {type(value).__name__}$",
    ):
        _checks.check_bool(value, "freeze_moving_stats")


# check_positive_int


def test_check_positive_int_returns_the_int():
    assert _checks.check_positive_int(3, "steps") == 3
    assert _checks.check_positive_int(None, "steps", allow_none=True) is None


def test_check_positive_int_accepts_a_numpy_integer():
    value = _checks.check_positive_int(np.int64(8), "batch_size")
    assert value == 8 and type(value) is int


@pytest.mark.parametrize("value", [0, -2, np.int32(0)])
def test_check_positive_int_rejects_integers_below_one(value):
    with pytest.raises(
        ValueError,
        match=r"^Expected `batch_size` to be a positive integer\. "
        rf"Received: batch_size={re.escape(repr(value))}$",
    ):
        _checks.check_positive_int(value, "batch_size")


@pytest.mark.parametrize("value", [1.0, True, np.bool_(True), None, "8"])
def test_check_positive_int_rejects_other_types(value):
    with pytest.raises(
        TypeError,
        match=r"^Expected `batch_size` to be a positive integer\. "
        rf"Received: batch_size=.* of type {type(value).__name__}$",
    ):
        _checks.check_positive_int(value, "batch_size")


def test_check_positive_int_or_none_says_so():
    with pytest.raises(
        ValueError,
        match=r"^Expected `steps` to be a positive integer or None\. "
        r"Received: steps=0$",
    ):
        _checks.check_positive_int(0, "steps", allow_none=True)


# check_positive_number


@pytest.mark.parametrize("value", [0.5, 2, np.float32(0.25), np.int64(3)])
def test_check_positive_number_returns_a_float(value):
    assert _checks.check_positive_number(value, "max_gap") == float(value)


@pytest.mark.parametrize(
    "value, error",
    [
        (0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("0.5", TypeError),
        (True, TypeError),
    ],
)
def test_check_positive_number_rejects_other_values(value, error):
    with pytest.raises(error, match=r"^Expected `max_gap` to be a positive"):
        _checks.check_positive_number(value, "max_gap")


# check_one_of


def test_check_one_of_returns_the_value():
    assert (
        _checks.check_one_of("warn", "on_change", ("warn", "raise")) == "warn"
    )


@pytest.mark.parametrize("value, error", [("stop", ValueError), (1, TypeError)])
def test_check_one_of_rejects_other_values(value, error):
    with pytest.raises(
        error, match=r"^Expected `on_change` to be one of 'warn', 'raise'\. "
    ):
        _checks.check_one_of(value, "on_change", ("warn", "raise"))


# check_rule_result


def test_check_rule_result_rejects_a_non_bool():
    layer = keras.layers.Dense(2, name="d")
    with pytest.raises(
        TypeError,
        match=r"^Expected the `up_to` callable to return a bool\. Received: "
        r"1 of type int for layer 'd'$",
    ):
        _checks.check_rule_result(1, "up_to", layer)
    assert _checks.check_rule_result(np.bool_(False), "up_to", layer) is False


# check_verbose


@pytest.mark.parametrize(
    "value, expected", [("auto", 1), (0, 0), (1, 1), (2, 2)]
)
def test_check_verbose_returns_an_int(value, expected):
    assert _checks.check_verbose(value) == expected


@pytest.mark.parametrize("value", [3, -1, True, "silent", None])
def test_check_verbose_rejects_other_values(value):
    with pytest.raises(
        ValueError,
        match=r'^Expected `verbose` to be "auto", 0, 1 or 2\. '
        rf"Received: verbose={value!r}$",
    ):
        _checks.check_verbose(value)
