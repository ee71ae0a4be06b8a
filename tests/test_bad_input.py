"""What users get wrong, tried on every public function that changes or reads
a model: each bad input must end in frozen_bn's own `TypeError` or
`ValueError` (raised in frozen_bn's code, not deep inside Keras), naming the
argument, with the model bitwise and structurally as it was.

`BAD_INPUT_CASES` counts the cases the module tries (hypothesis examples
counted at their maximum); docs/guarantees.md quotes it.
"""

import os
import pathlib

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import frozen_bn
from frozen_bn import _walk
from frozen_bn.callbacks import ModeGapMonitor, PreciseBN
from tests.helpers import all_weights, assert_weights_bitwise_equal, images

PACKAGE = os.path.dirname(os.path.abspath(frozen_bn.__file__))
EXAMPLES = 12  # Hypothesis examples per property.


def conv_net():
    """A small Functional model: conv, BN, a Sequential block, pooling."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    block = keras.Sequential(
        [keras.Input((8, 8, 4)), keras.layers.BatchNormalization(name="bn2")],
        name="block",
    )
    x = keras.layers.GlobalAveragePooling2D()(block(x))
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def structure(model):
    """Every layer's class and flags, in model order."""
    return [
        (
            type(layer).__name__,
            layer.trainable,
            getattr(layer, "freeze_moving_stats", None),
        )
        for layer in _walk.iter_layers(model)
    ]


def assert_clean_error(excinfo, error_type, argument):
    """Our own check raised `error_type`, naming `argument`."""
    assert excinfo.type is error_type, excinfo.value
    assert f"`{argument}`" in str(excinfo.value)
    last = os.path.abspath(str(excinfo.traceback[-1].path))
    assert last.startswith(PACKAGE), f"raised in {last}"


def assert_rejected(call, model, error_type, argument):
    """`call()` raises a clean error and leaves `model` as it was."""
    weights, layers = all_weights(model), structure(model)
    with pytest.raises((TypeError, ValueError)) as excinfo:
        call()
    assert_clean_error(excinfo, error_type, argument)
    assert_weights_bitwise_equal(weights, all_weights(model))
    assert structure(model) == layers
    return excinfo


def nan_at(x, position, value=np.nan):
    x = x.copy()
    x[position] = value
    return x


def batches_then_bad(good, bad, bad_index):
    """A generator of batches whose `bad_index`-th is `bad`."""
    for index in range(bad_index + 1):
        yield bad if index == bad_index else good


# Bad `data` for every function that reads batches: (data, error, words).
BAD_DATA = {
    "none": (lambda: None, TypeError, "Received: data=None"),
    "path": (lambda: "images.npy", TypeError, "A path is not data"),
    "pathlib": (lambda: pathlib.Path("x.npz"), TypeError, "A path"),
    "number": (lambda: 5, TypeError, "Received: data=5"),
    "list of batches": (
        lambda: [images(8, seed=i) for i in range(3)],
        ValueError,
        "1 input array",
    ),
    "channels": (
        lambda: np.zeros((8, 8, 8, 4), "float32"),
        ValueError,
        "axis 3 is 3",
    ),
    "rank": (lambda: np.zeros((8, 8, 8), "float32"), ValueError, "rank 4"),
    "spatial size": (
        lambda: np.zeros((8, 9, 9, 3), "float32"),
        ValueError,
        "axis 1 is 8",
    ),
    "strings": (lambda: np.full((8, 8, 8, 3), "a"), TypeError, "numbers"),
    "complex": (
        lambda: np.zeros((8, 8, 8, 3), "complex64"),
        ValueError,
        "float values",
    ),
    "empty array": (
        lambda: np.zeros((0, 8, 8, 3), "float32"),
        ValueError,
        "at least one batch",
    ),
    "empty iterator": (lambda: iter([]), ValueError, "at least one batch"),
    "third batch": (
        lambda: batches_then_bad(images(8), np.zeros((8, 4), "float32"), 2),
        ValueError,
        "batch 2 of shape (8, 4)",
    ),
    "nan": (
        lambda: nan_at(images(16), (9, 1, 2, 0)),
        ValueError,
        "nan in batch 0 at position (9, 1, 2, 0)",
    ),
    "inf in second batch": (
        lambda: nan_at(images(40), (33, 0, 0, 2), np.inf),
        ValueError,
        "inf in batch 1 at position (1, 0, 0, 2)",
    ),
    "nan in a generator": (
        lambda: batches_then_bad(images(8), nan_at(images(8), (3, 3, 3, 1)), 1),
        ValueError,
        "batch 1 at position (3, 3, 3, 1)",
    ),
    "unequal arrays": (
        lambda: (images(8), np.zeros(5)),
        None,  # `y` is not read: only `x` matters.
        None,
    ),
}
BAD_DATA = {key: value for key, value in BAD_DATA.items() if value[1]}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_recalibrate_rejects_bad_data(case):
    make, error, words = BAD_DATA[case]
    model = conv_net()
    excinfo = assert_rejected(
        lambda: frozen_bn.recalibrate(model, make(), verbose=0, batch_size=32),
        model,
        error,
        "data",
    )
    assert words in str(excinfo.value)


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_cache_features_rejects_bad_data(case, tmp_path):
    make, error, words = BAD_DATA[case]
    model = conv_net()
    excinfo = assert_rejected(
        lambda: frozen_bn.cache_features(
            model, make(), path=tmp_path, verbose=0
        ),
        model,
        error,
        "data",
    )
    assert words in str(excinfo.value)
    assert os.listdir(tmp_path) == []  # No file, not even a partial one.


# `x` of `diagnose` and `ModeGapMonitor`: arrays only.
BAD_X = {
    "none": (None, TypeError),
    "path": ("x.npy", TypeError),
    "generator": (iter([np.zeros((4, 8, 8, 3))]), TypeError),
    "list of batches": ([images(8), images(8)], ValueError),
    "channels": (np.zeros((8, 8, 8, 1), "float32"), ValueError),
    "nan": (nan_at(images(8), (7, 7, 7, 2)), ValueError),
    "inf": (nan_at(images(8), (0, 0, 0, 0), -np.inf), ValueError),
}


@pytest.mark.parametrize("case", sorted(BAD_X))
def test_diagnose_rejects_bad_x(case):
    x, error = BAD_X[case]
    model = conv_net()
    assert_rejected(
        lambda: frozen_bn.diagnose(model, x, verbose=0), model, error, "x"
    )


@pytest.mark.parametrize(
    "arguments, error, argument",
    [
        ({"y": np.zeros(3)}, ValueError, "y"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": "32"}, TypeError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"verbose": 3}, ValueError, "verbose"),
    ],
)
def test_diagnose_rejects_bad_arguments(arguments, error, argument):
    model = conv_net()
    assert_rejected(
        lambda: frozen_bn.diagnose(model, images(8), **arguments),
        model,
        error,
        argument,
    )


@pytest.mark.parametrize(
    "arguments, error, argument",
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": "8"}, TypeError, "batch_size"),
        ({"batch_size": True}, TypeError, "batch_size"),
        ({"steps": 0}, ValueError, "steps"),
        ({"steps": 1.5}, TypeError, "steps"),
        ({"layers": "nope"}, ValueError, "layers"),
        ({"layers": ["bn1", 3]}, ValueError, "layers"),
        ({"verbose": "loud"}, ValueError, "verbose"),
    ],
)
def test_recalibrate_rejects_bad_arguments(arguments, error, argument):
    model = conv_net()
    assert_rejected(
        lambda: frozen_bn.recalibrate(model, images(8), **arguments),
        model,
        error,
        argument,
    )


def test_recalibrate_refuses_statistics_that_overflow():
    model = conv_net()
    huge = np.full((8, 8, 8, 3), 3e38, "float32")  # Finite; its square not.
    huge[::2] = -3e38
    assert_rejected(
        lambda: frozen_bn.recalibrate(model, huge, verbose=0),
        model,
        ValueError,
        "data",
    )


def test_numpy_scalars_are_accepted():
    model = conv_net()
    frozen_bn.recalibrate(
        model, images(8), batch_size=np.int64(4), steps=np.int32(2), verbose=0
    )
    patched = frozen_bn.patch_model(model, inplace=np.bool_(True))
    assert patched is model
    frozen = frozen_bn.freeze(model, up_to=np.int64(2), inplace=np.bool_(False))
    assert not frozen.layers[1].trainable


# Model surgery: flags that must be bools, rules that fail part way.


def failing_rule(layer):
    if layer.name == "bn2":
        raise RuntimeError("the rule fails on bn2")
    return True


@pytest.mark.parametrize(
    "call, error, argument",
    [
        (
            lambda m: frozen_bn.patch_model(m, inplace="no"),
            TypeError,
            "inplace",
        ),
        (lambda m: frozen_bn.patch_model(m, inplace=1), TypeError, "inplace"),
        (
            lambda m: frozen_bn.patch_model(m, inplace=None),
            TypeError,
            "inplace",
        ),
        (
            lambda m: frozen_bn.patch_model(
                m, freeze_moving_stats=lambda layer: 1, inplace=True
            ),
            TypeError,
            "freeze_moving_stats",
        ),
        (
            lambda m: frozen_bn.patch_model(
                m,
                freeze_moving_stats=lambda layer: layer.name == "bn1" or None,
                inplace=True,
            ),
            TypeError,
            "freeze_moving_stats",
        ),
        (
            lambda m: frozen_bn.patch_model(
                m, freeze_moving_stats=["nope"], inplace=True
            ),
            ValueError,
            "freeze_moving_stats",
        ),
        (
            lambda m: frozen_bn.patch_model(
                m, freeze_moving_stats="all", inplace=True
            ),
            TypeError,
            "freeze_moving_stats",
        ),
        (
            lambda m: frozen_bn.unpatch_model(m, inplace="yes"),
            TypeError,
            "inplace",
        ),
        (lambda m: frozen_bn.freeze(m, 2, inplace="no"), TypeError, "inplace"),
        (
            lambda m: frozen_bn.freeze(m, 2, batch_norm="x"),
            ValueError,
            "batch_norm",
        ),
        (
            lambda m: frozen_bn.freeze(m, 2, batch_norm=1),
            TypeError,
            "batch_norm",
        ),
        (
            lambda m: frozen_bn.freeze(m, "nope", inplace=True),
            ValueError,
            "up_to",
        ),
        (lambda m: frozen_bn.freeze(m, 99, inplace=True), ValueError, "up_to"),
        (lambda m: frozen_bn.freeze(m, 1.5, inplace=True), TypeError, "up_to"),
        (lambda m: frozen_bn.freeze(m, True, inplace=True), TypeError, "up_to"),
        (
            lambda m: frozen_bn.freeze(m, lambda layer: "yes", inplace=True),
            TypeError,
            "up_to",
        ),
        (
            lambda m: frozen_bn.freeze(m, 2, stages=1, inplace=True),
            ValueError,
            "up_to",
        ),
        (lambda m: frozen_bn.unfreeze(m, inplace=True), ValueError, "model"),
        (lambda m: frozen_bn.unfreeze(m, inplace="x"), TypeError, "inplace"),
    ],
)
def test_model_surgery_rejects_bad_arguments(call, error, argument):
    model = conv_net()
    assert_rejected(lambda: call(model), model, error, argument)


def test_patch_model_with_a_failing_rule_changes_nothing():
    model = conv_net()
    weights, layers = all_weights(model), structure(model)
    with pytest.raises(RuntimeError, match="fails on bn2"):
        frozen_bn.patch_model(
            model, freeze_moving_stats=failing_rule, inplace=True
        )
    assert structure(model) == layers
    assert_weights_bitwise_equal(weights, all_weights(model))


# Callbacks: arguments checked when made, data when training starts.


@pytest.mark.parametrize(
    "make, error, argument",
    [
        (lambda: PreciseBN(None), TypeError, "data"),
        (lambda: PreciseBN("train.npz"), TypeError, "data"),
        (lambda: PreciseBN(iter([images(8)])), TypeError, "data"),
        (lambda: PreciseBN(images(8), batch_size=0), ValueError, "batch_size"),
        (lambda: PreciseBN(images(8), freq="2"), TypeError, "freq"),
        (lambda: PreciseBN(images(8), steps=-1), ValueError, "steps"),
        (lambda: ModeGapMonitor(None), TypeError, "x"),
        (lambda: ModeGapMonitor("x.npy"), TypeError, "x"),
        (
            lambda: ModeGapMonitor(images(8), max_gap="0.5"),
            TypeError,
            "max_gap",
        ),
        (
            lambda: ModeGapMonitor(images(8), max_gap=np.nan),
            ValueError,
            "max_gap",
        ),
        (lambda: ModeGapMonitor(images(8), max_gap=0), ValueError, "max_gap"),
        (
            lambda: ModeGapMonitor(images(8), batch_size=0),
            ValueError,
            "batch_size",
        ),
    ],
)
def test_callbacks_reject_bad_arguments(make, error, argument):
    with pytest.raises((TypeError, ValueError)) as excinfo:
        make()
    assert_clean_error(excinfo, error, argument)


def compiled_net():
    model = conv_net()
    model.compile("sgd", "mse")
    return model


@pytest.mark.parametrize(
    "callback, argument",
    [
        (
            lambda: PreciseBN(nan_at(images(16), (12, 0, 1, 2)), verbose=0),
            "data",
        ),
        (lambda: PreciseBN(np.zeros((8, 5), "float32"), verbose=0), "data"),
        (lambda: ModeGapMonitor(nan_at(images(16), (3, 0, 1, 2))), "x"),
        (lambda: ModeGapMonitor(np.zeros((8, 5), "float32")), "x"),
    ],
)
def test_callbacks_reject_bad_data_in_fit(callback, argument):
    model = compiled_net()
    weights, layers = all_weights(model), structure(model)
    with pytest.raises(ValueError) as excinfo:
        model.fit(
            images(8),
            np.zeros((8, 2)),
            epochs=1,
            verbose=0,
            callbacks=[callback()],
        )
    assert_clean_error(excinfo, ValueError, argument)
    # Array data is checked when training starts, before any step.
    assert_weights_bitwise_equal(weights, all_weights(model))
    assert structure(model) == layers


def test_mode_gap_monitor_stops_on_nan_outputs():
    model = compiled_net()
    monitor = ModeGapMonitor(images(8), max_gap=0.5)
    dense = model.layers[-1]
    dense.kernel.assign(np.full(dense.kernel.shape, np.nan, "float32"))
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        history = model.fit(
            images(8),
            np.zeros((8, 2)),
            epochs=3,
            verbose=0,
            callbacks=[monitor],
        )
    assert len(history.history["loss"]) == 1  # Stopped after epoch 1.
    assert np.isnan(history.history["mode_gap"][0])


def test_diagnose_blames_nan_weights_not_statistics():
    model = conv_net()
    dense = model.layers[-1]
    dense.kernel.assign(np.full(dense.kernel.shape, np.nan, "float32"))
    report = frozen_bn.diagnose(model, images(16), verbose=0)
    assert report.flagged
    assert report.non_finite_outputs == 2 * 16 * 2
    assert "not the cause" in report.verdict
    assert "recalibrating would only write NaN" in report.fix


# Hypothesis: shapes, dtypes and where a non-finite value hides.


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=5).filter(
        lambda s: len(s) != 4 or s[1:] != [8, 8, 3]
    )
)
def test_any_shape_but_the_inputs_is_rejected(shape):
    model = conv_net()
    assert_rejected(
        lambda: frozen_bn.recalibrate(
            model, np.zeros(shape, "float32"), verbose=0
        ),
        model,
        ValueError,
        "data",
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    dtype=st.sampled_from(
        ["U3", "S2", "object", "complex64", "datetime64[s]", "timedelta64[s]"]
    )
)
def test_non_numeric_dtypes_are_rejected(dtype):
    model = conv_net()
    x = np.zeros((4, 8, 8, 3)).astype(dtype)
    assert_rejected(
        lambda: frozen_bn.recalibrate(model, x, verbose=0),
        model,
        TypeError if np.dtype(dtype).kind not in "c" else ValueError,
        "data",
    )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    sample=st.integers(0, 11),
    row=st.integers(0, 7),
    column=st.integers(0, 7),
    channel=st.integers(0, 2),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_a_non_finite_value_is_found_where_it_is(
    sample, row, column, channel, value
):
    model = conv_net()
    x = nan_at(images(12), (sample, row, column, channel), value)
    excinfo = assert_rejected(
        lambda: frozen_bn.recalibrate(model, x, batch_size=4, verbose=0),
        model,
        ValueError,
        "data",
    )
    assert (
        f"{value} in batch {sample // 4} at position "
        f"({sample % 4}, {row}, {column}, {channel})"
    ) in str(excinfo.value)


# The number of cases this module tries; docs/guarantees.md quotes it.
BAD_INPUT_CASES = (
    2 * len(BAD_DATA)
    + len(BAD_X)
    + 5  # diagnose arguments
    + 8  # recalibrate arguments
    + 1  # overflowing statistics
    + 19  # model surgery arguments
    + 1  # a failing rule
    + 12  # callback arguments
    + 4  # callback data in fit()
    + 2  # NaN outputs
    + 3 * EXAMPLES  # hypothesis
)
