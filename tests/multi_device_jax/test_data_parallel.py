"""frozen_bn under `keras.distribution.DataParallel` with two JAX devices."""

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _walk
from tests.helpers import images, to_numpy
from tests.multi_device_models import (
    DEVICE_COUNT,
    bn_first_model,
    check_callbacks_in_fit,
    check_diagnose_matches_one_device,
    check_recalibrate_matches_one_device,
    device_copies,
    labels,
    shifted_halves,
    statistics_variables,
    transfer_model,
)

OURS = frozen_bn.BatchNormalization


def assert_devices_hold(variables, expected):
    """Every device's copy of each variable is bitwise `expected`."""
    for variable, value in zip(variables, expected, strict=True):
        for copy in device_copies(variable):
            np.testing.assert_array_equal(copy, value, err_msg=variable.path)


def patched_transfer_model(distribution):
    """The transfer-learning model, patched and compiled in `distribution`."""
    with distribution.scope():
        model, _ = transfer_model()
        model = frozen_bn.patch_model(model)
        model.compile(
            keras.optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy"
        )
    return model, model.get_layer("base")


def test_distribution_spans_two_devices(distribution):
    assert len(distribution.device_mesh.devices.flatten()) == DEVICE_COUNT


def test_frozen_layer_matches_stock_inference(distribution):
    x = images(count=8)
    with distribution.scope():
        _, base = transfer_model()
        patched = frozen_bn.patch_model(base)
        patched.trainable = False
        np.testing.assert_array_equal(
            to_numpy(patched(x, training=True)),
            to_numpy(base(x, training=False)),
        )


def test_patch_model_keeps_weights_on_both_devices(distribution):
    with distribution.scope():
        model, _ = transfer_model()
        patched = frozen_bn.patch_model(model)
    assert all(
        type(layer) is OURS for layer in _walk.batch_norm_layers(patched)
    )
    assert len(patched.weights) == len(model.weights)
    assert_devices_hold(patched.weights, [to_numpy(v) for v in model.weights])


@pytest.mark.parametrize("stage", ["new_top", "fine_tune"])
def test_frozen_statistics_unchanged_on_every_device_after_fit(
    distribution, stage
):
    model, base = patched_transfer_model(distribution)
    statistics = statistics_variables(base)
    before = [to_numpy(v) for v in statistics]
    kernel = to_numpy(model.layers[-1].kernel)
    base.trainable = stage == "fine_tune"  # statistics stay frozen anyway
    with distribution.scope():
        model.compile(
            keras.optimizers.SGD(1e-2, momentum=0.9),
            "sparse_categorical_crossentropy",
        )
        model.fit(images(), labels(), batch_size=8, epochs=2, verbose=0)
    assert not np.array_equal(to_numpy(model.layers[-1].kernel), kernel)
    assert_devices_hold(statistics, before)


class RecordDevices(keras.callbacks.Callback):
    """Records each device's copy of `variables` after every batch."""

    def __init__(self, variables):
        super().__init__()
        self.variables = variables
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        # JAX's fit() keeps the state off the variables between steps.
        self.model.jax_state_sync()
        self.steps.append([device_copies(v) for v in self.variables])


def test_unfrozen_statistics_agree_across_devices_after_each_step(
    distribution,
):
    model, base = patched_transfer_model(distribution)
    for layer in _walk.batch_norm_layers(base):
        layer.freeze_moving_stats = False
    statistics = statistics_variables(base)
    before = [to_numpy(v) for v in statistics]
    record = RecordDevices(statistics)
    with distribution.scope():
        model.compile(
            keras.optimizers.SGD(1e-2), "sparse_categorical_crossentropy"
        )
        model.fit(
            images(), labels(), batch_size=8, verbose=0, callbacks=[record]
        )
    assert len(record.steps) == 4
    for step in record.steps:
        for first, second in step:
            np.testing.assert_array_equal(first, second)
    assert not np.array_equal(record.steps[-1][0][0], before[0])


def test_one_step_updates_statistics_with_the_global_batch(distribution):
    momentum = 0.5
    x = shifted_halves()
    with distribution.scope():
        model, bn = bn_first_model(momentum)
        frozen_bn.patch_model(model, freeze_moving_stats=False, inplace=True)
        model.compile(keras.optimizers.SGD(0.0), "mse")
        model.fit(x, np.zeros((16, 1)), batch_size=16, shuffle=False, verbose=0)
    mean, variance = x.mean(0, dtype="float64"), x.var(0, dtype="float64")
    for copy in device_copies(bn.moving_mean):
        np.testing.assert_allclose(copy, (1 - momentum) * mean, rtol=1e-5)
    for copy in device_copies(bn.moving_variance):
        expected = momentum * 1.0 + (1 - momentum) * variance
        np.testing.assert_allclose(copy, expected, rtol=1e-5)


def test_recalibrate_matches_one_device(distribution):
    check_recalibrate_matches_one_device(distribution.scope(), device_copies)


def test_diagnose_matches_one_device_and_writes_nothing(distribution):
    check_diagnose_matches_one_device(distribution.scope(), assert_devices_hold)


def test_callbacks_in_fit_match_one_device(distribution):
    check_callbacks_in_fit(distribution.scope(), device_copies)
