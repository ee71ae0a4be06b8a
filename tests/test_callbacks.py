"""Tests for `frozen_bn.callbacks` inside `fit()` (every backend).

Each callback is checked against an independent reference: the statistics
`recalibrate` measures for the same weights, `evaluate()` with them, a run
of the same training without the callback, `diagnose` on the same sample.
"""

import csv
import re
import warnings

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _verdict
from frozen_bn.callbacks import (
    FrozenStatisticsError,
    FrozenStatisticsGuard,
    ModeGapMonitor,
    PreciseBN,
)
from tests import guide_pattern
from tests.helpers import images, moving_statistics, randomize_batch_norms

CLASSES = 3
EVENTS = ("epoch_begin", "test_begin", "epoch_end", "train_end")


def classifier():
    """Two conv/BN blocks that train, a Dropout and a softmax head."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for name in ("a", "b"):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv_{name}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn_{name}")(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def dataset(count=48, seed=0):
    labels = np.random.default_rng(seed).integers(0, CLASSES, count)
    return images(count, seed=seed), labels


def compiled(model, **optimizer_config):
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9, **optimizer_config),
        "sparse_categorical_crossentropy",
    )
    return model


class Snapshots(keras.callbacks.Callback):
    """Records every weight of the model (statistics included) at events."""

    def __init__(self):
        super().__init__()
        self.at = {event: [] for event in EVENTS}

    def _take(self, event):
        self.at[event].append(self.model.get_weights())

    def on_epoch_begin(self, epoch, logs=None):
        self._take("epoch_begin")

    def on_test_begin(self, logs=None):
        self._take("test_begin")

    def on_epoch_end(self, epoch, logs=None):
        self._take("epoch_end")

    def on_train_end(self, logs=None):
        self._take("train_end")


def train(callbacks, epochs=2, verbose=0, **optimizer_config):
    """Fits a fresh `classifier` with `callbacks`; returns it and History."""
    x, y = dataset()
    model = compiled(classifier(), **optimizer_config)
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=epochs,
        validation_data=dataset(24, seed=1),
        callbacks=callbacks,
        shuffle=False,
        verbose=verbose,
    )
    return model, history


def recalibrated_statistics(weights):
    """The statistics `recalibrate` measures on the training data for a
    `classifier` holding `weights`."""
    model = classifier()
    model.set_weights(weights)
    frozen_bn.recalibrate(model, dataset()[0], verbose=0)
    return moving_statistics(model)


def statistics_of(weights):
    model = classifier()
    model.set_weights(weights)
    return moving_statistics(model)


def assert_bitwise_equal(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


# PreciseBN


def test_validation_runs_with_the_statistics_recalibrate_measures():
    snapshots = Snapshots()
    _, history = train([PreciseBN(dataset()[0], verbose=0), snapshots])
    val_x, val_y = dataset(24, seed=1)
    for weights, val_loss in zip(
        snapshots.at["test_begin"], history.history["val_loss"], strict=True
    ):
        expected = recalibrated_statistics(weights)
        assert_bitwise_equal(statistics_of(weights), expected)
        reference = compiled(classifier())
        reference.set_weights(weights)
        loss = reference.evaluate(val_x, val_y, batch_size=16, verbose=0)
        np.testing.assert_allclose(val_loss, loss, rtol=1e-6)


def test_without_the_callback_validation_sees_the_moving_average():
    snapshots = Snapshots()
    train([snapshots])
    weights = snapshots.at["test_begin"][-1]
    got, expected = statistics_of(weights), recalibrated_statistics(weights)
    assert not np.array_equal(got[0][0], expected[0][0])


def test_checkpoint_and_the_returned_model_hold_precise_statistics(tmp_path):
    path = str(tmp_path / "checkpoint.keras")
    model, _ = train(
        [
            PreciseBN(dataset()[0], verbose=0),
            keras.callbacks.ModelCheckpoint(path),
        ]
    )
    saved = keras.saving.load_model(path)
    expected = recalibrated_statistics(saved.get_weights())
    assert_bitwise_equal(moving_statistics(saved), expected)
    assert_bitwise_equal(moving_statistics(model), expected)


def test_training_resumes_with_its_own_weights_and_statistics():
    # Callbacks run in order: `before` sees the model at the end of an
    # epoch before PreciseBN lends statistics, `after` at the start of one
    # after PreciseBN gives training its own back.
    before, after, without = Snapshots(), Snapshots(), Snapshots()
    precise = PreciseBN(dataset()[0], verbose=0)
    train([before, precise, after], epochs=3)
    train([without], epochs=3)
    for snapshots, event in ((before, "epoch_end"), (after, "epoch_begin")):
        for got, expected in zip(
            snapshots.at[event], without.at[event], strict=True
        ):
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_array_equal(a, b)


def test_ema_weights_are_evaluated_and_saved_with_their_statistics():
    snapshots, plain = Snapshots(), Snapshots()
    ema = {"use_ema": True, "ema_momentum": 0.5}
    model, _ = train(
        [
            keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
            PreciseBN(dataset()[0], verbose=0),
            snapshots,
        ],
        epochs=3,
        **ema,
    )
    reference, _ = train(
        [keras.callbacks.SwapEMAWeights(swap_on_epoch=True), plain],
        epochs=3,
        **ema,
    )
    # Evaluated and checkpointed: the averaged weights, their statistics.
    for test, end in zip(
        snapshots.at["test_begin"], snapshots.at["epoch_end"], strict=True
    ):
        assert_bitwise_equal(statistics_of(test), recalibrated_statistics(test))
        for a, b in zip(test, end, strict=True):
            np.testing.assert_array_equal(a, b)
    # Training: bitwise the run without PreciseBN, EMA variables included.
    for got, expected in zip(
        snapshots.at["epoch_begin"], plain.at["epoch_begin"], strict=True
    ):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(
        model.optimizer.variables, reference.optimizer.variables, strict=True
    ):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_frozen_layers_keep_their_statistics():
    model = compiled(classifier())
    model.get_layer("bn_a").trainable = False
    before = moving_statistics(model.get_layer("bn_a"))
    model = compiled(model)
    x, y = dataset()
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=16,
        callbacks=[PreciseBN(x, verbose=0)],
        verbose=0,
    )
    assert_bitwise_equal(moving_statistics(model.get_layer("bn_a")), before)


def test_freq_skips_epochs():
    snapshots = Snapshots()
    train([PreciseBN(dataset()[0], freq=2, verbose=0), snapshots], epochs=2)
    first, second = snapshots.at["test_begin"]
    assert not np.array_equal(
        statistics_of(first)[0][0], recalibrated_statistics(first)[0][0]
    )
    assert_bitwise_equal(statistics_of(second), recalibrated_statistics(second))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"data": iter([np.zeros((2, 8, 8, 3))])}, "readable more than once"),
        ({"freq": 0}, "`freq`"),
        ({"batch_size": 2.5}, "`batch_size`"),
        ({"verbose": 3}, "`verbose`"),
    ],
)
def test_precise_bn_rejects_bad_arguments(arguments, message):
    arguments = {"data": dataset()[0], **arguments}
    with pytest.raises((TypeError, ValueError), match=message):
        PreciseBN(**arguments)


def test_precise_bn_rejects_layers_that_are_not_in_the_model():
    with pytest.raises(ValueError, match="`layers`"):
        train([PreciseBN(dataset()[0], layers=["nope"], verbose=0)])


# FrozenStatisticsGuard


def guide_model(patched):
    model = guide_pattern.guide_model()
    randomize_batch_norms(model)
    return frozen_bn.patch_model(model) if patched else model


def fit_guide_model(model, callbacks):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, callbacks=callbacks, verbose=0)


def test_guard_raises_on_the_guide_pattern_where_fit_overrides_it():
    # Independent of the guard: does this Keras move the base's statistics?
    moved = guide_pattern.moved_under_fit(guide_model(patched=False))
    model = guide_model(patched=False)
    if moved["base_bn"]:
        with pytest.raises(FrozenStatisticsError, match="base_bn"):
            fit_guide_model(model, [FrozenStatisticsGuard(on_change="raise")])
    else:
        fit_guide_model(model, [FrozenStatisticsGuard(on_change="raise")])


def guard_messages(model, x, y):
    """The advice a `FrozenStatisticsGuard` gives over one epoch.

    Modes that are wrong although no frozen statistics move are warned
    about with a `UserWarning`, whatever `on_change` says.
    """
    model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=1,
            callbacks=[FrozenStatisticsGuard(on_change="raise")],
            verbose=0,
        )
    return [str(w.message) for w in caught if w.category is UserWarning]


def test_guard_reports_layers_meant_to_train_that_fit_switches_off():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")

    messages = guard_messages(guide_pattern.guide_model(None), x, y)

    switched_off = [m for m in messages if "meant to train" in m]
    if guide_pattern.HONOURS_TRAINING_NONE:
        [message] = switched_off
        assert "base_bn, after_bn, after_dropout" in message
    else:
        assert switched_off == []


def test_guard_names_the_bn_a_plain_call_trains():
    x = images(32)
    y = np.zeros((32, 1), "float32")

    messages = guard_messages(guide_pattern.augmented_conv_net(), x, y)

    named = [m for m in messages if "bn (after flip)" in m]
    assert len(named) == int(guide_pattern.SPREADS_TRAINING_DEFAULT)


def test_guard_warns_how_far_the_statistics_moved():
    model = guide_model(patched=False)
    base_bn = model.get_layer("base").get_layer("base_bn")
    [before] = moving_statistics(base_bn)
    guard = FrozenStatisticsGuard(freq=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_guide_model(model, [guard])
    [after] = moving_statistics(base_bn)
    messages = [str(w.message) for w in caught if w.category is RuntimeWarning]
    moved = guard.moved_layers()
    if np.array_equal(after[0], before[0]):  # Keras >= 3.16 honours it.
        assert moved == [] and messages == []
        return
    [(layer, shift, ratio)] = moved
    assert layer is base_bn
    epsilon = base_bn.epsilon
    expected_shift = np.sqrt(
        np.mean((after[0] - before[0]) ** 2 / (before[1] + epsilon))
    )
    np.testing.assert_allclose(shift, expected_shift, rtol=1e-5)
    np.testing.assert_allclose(
        ratio,
        np.exp(np.mean(np.log((after[1] + epsilon) / (before[1] + epsilon)))),
        rtol=1e-5,
    )
    assert any("base_bn" in m and "mean shift" in m for m in messages)


class PlantDrift(keras.callbacks.Callback):
    """Moves a layer's moving mean at the end of the first epoch."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            mean = keras.ops.convert_to_numpy(self.layer.moving_mean)
            self.layer.moving_mean.assign(mean + 0.5)


def test_guard_catches_a_planted_drift_in_a_frozen_bn_layer():
    model = guide_model(patched=True)
    base_bn = model.get_layer("base").get_layer("base_bn")
    guard = FrozenStatisticsGuard(on_change="raise")
    with pytest.raises(FrozenStatisticsError, match="base_bn") as error:
        fit_guide_model(model, [PlantDrift(base_bn), guard])
    [(layer, shift, _)] = guard.moved_layers()
    assert layer is base_bn
    assert shift > 0 and f"{shift:.3g}" in str(error.value)


def test_guard_is_silent_on_frozen_bn_layers():
    model = guide_model(patched=True)
    model.get_layer("before_bn").trainable = False
    before = moving_statistics(model)
    guard = FrozenStatisticsGuard(on_change="raise", freq=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        fit_guide_model(model, [guard])
    assert guard.moved_layers() == []
    # The guide pattern's base and the frozen layer kept theirs.
    assert_bitwise_equal(moving_statistics(model)[:2], before[:2])


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"on_change": "stop"}, "`on_change`"),
        ({"freq": 0}, "`freq`"),
        ({"freq": "batch"}, "`freq`"),
    ],
)
def test_guard_rejects_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        FrozenStatisticsGuard(**arguments)


# ModeGapMonitor


def frozen_base_classifier():
    """A `classifier` whose first block is frozen with stock layers."""
    model = classifier()
    randomize_batch_norms(model)
    model.get_layer("bn_a").trainable = False
    return compiled(model)


def test_mode_gap_is_logged_as_diagnose_reports_it(tmp_path):
    x, y = dataset()
    sample_x, sample_y = dataset(24, seed=2)
    path = str(tmp_path / "log.csv")
    model = frozen_base_classifier()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        callbacks=[
            ModeGapMonitor(sample_x, sample_y),
            keras.callbacks.CSVLogger(path),
        ],
        verbose=0,
    )
    report = frozen_bn.diagnose(model, sample_x, sample_y, verbose=0)
    logged = history.history
    assert len(logged["mode_gap"]) == 2
    assert logged["mode_gap"][-1] == report.output_gap
    assert logged["training_mode_accuracy"][-1] == report.training["accuracy"]
    assert logged["inference_mode_accuracy"][-1] == report.inference["accuracy"]
    with open(path) as file:
        rows = list(csv.DictReader(file))
    assert float(rows[-1]["mode_gap"]) == pytest.approx(report.output_gap)


def test_mode_gap_without_labels_logs_the_gap_only():
    x, y = dataset()
    model = frozen_base_classifier()
    history = model.fit(
        x, y, epochs=1, callbacks=[ModeGapMonitor(x[:16])], verbose=0
    )
    assert "mode_gap" in history.history
    assert "inference_mode_accuracy" not in history.history


def test_max_gap_stops_training():
    x, y = dataset()
    model = frozen_base_classifier()
    monitor = ModeGapMonitor(x[:16], max_gap=_verdict.OUTPUT_GAP * 1e-3)
    history = model.fit(x, y, epochs=3, callbacks=[monitor], verbose=0)
    assert history.history["mode_gap"][0] >= monitor.max_gap
    assert len(history.history["loss"]) == 1


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"max_gap": 0}, ValueError, "`max_gap`"),
        ({"max_gap": "0.5"}, TypeError, "`max_gap`"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
    ],
)
def test_mode_gap_rejects_bad_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        ModeGapMonitor(dataset()[0], **arguments)


def test_mode_gap_rejects_inputs_that_do_not_fit_the_model():
    x, y = dataset()
    monitor = ModeGapMonitor(np.zeros((4, 5, 5, 3), "float32"))
    with pytest.raises(ValueError, match="Expected each batch of `x` to fit"):
        frozen_base_classifier().fit(x, y, callbacks=[monitor], verbose=0)


# What the callbacks print inside fit()


def fit_output(capsys, callbacks, verbose):
    """The lines a real `fit()` with `callbacks` prints, Keras's included.

    Each run of lines of Keras's progress bar counts as one line: how many
    updates it draws depends on how long each step takes.
    """
    capsys.readouterr()
    train(callbacks, verbose=verbose)
    lines = []
    for line in capsys.readouterr().out.splitlines():
        if lines and _is_progress(line) and _is_progress(lines[-1]):
            lines[-1] = line
        else:
            lines.append(line)
    return lines


def _is_progress(line):
    """Whether `line` is drawn by Keras's progress bar (`step/steps ...`)."""
    return re.match(r"(?:\x1b\[1m)?\d+/\d+\b", line) is not None


@pytest.mark.parametrize("fit_verbose", [1, 2])
def test_callbacks_add_no_line_to_fits_output_by_default(capsys, fit_verbose):
    alone = fit_output(capsys, [], fit_verbose)
    x, y = dataset(16)
    with_callbacks = fit_output(
        capsys,
        [PreciseBN(x), ModeGapMonitor(x, y), FrozenStatisticsGuard()],
        fit_verbose,
    )
    assert len(alone) == len(with_callbacks) > 0
    labels = ("PreciseBN", "ModeGapMonitor", "FrozenStatisticsGuard")
    assert not any(line.startswith(labels) for line in with_callbacks)


def test_precise_bn_verbose_prints_one_labelled_line_after_each_epoch(capsys):
    lines = fit_output(capsys, [PreciseBN(dataset(16)[0], verbose=1)], 2)
    ours = [i for i, line in enumerate(lines) if line.startswith("PreciseBN")]
    epochs = [i for i, line in enumerate(lines) if line.startswith("Epoch ")]
    assert [lines[i].split(":")[1] for i in ours] == [" epoch 1", " epoch 2"]
    assert "statistics of 2 layers recomputed in" in lines[ours[0]]
    # Each below Keras's line for its epoch, the first before epoch 2's.
    assert epochs[0] < ours[0] - 1 and ours[0] < epochs[1] < ours[1] - 1
    assert ours[1] == len(lines) - 1
