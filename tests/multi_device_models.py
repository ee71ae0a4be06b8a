"""A small transfer-learning model and data shared by the multi-device tests.

The model follows the transfer-learning recipe: a pretrained `base` (here:
random weights and non-trivial BN statistics) called with `training=False`,
and a new classification head on top.
"""

import keras
import numpy as np

from frozen_bn import _walk
from tests.helpers import images, randomize_batch_norms

CLASSES = 3
# Both suites run on two devices: two JAX CPU devices, two logical TF CPUs.
DEVICE_COUNT = 2


def labels(count=32, seed=0):
    return np.random.default_rng(seed).integers(0, CLASSES, count)


def transfer_model(**bn_config):
    """A head on a nested `base` of two conv/BN blocks; returns both."""
    base_inputs = keras.Input((8, 8, 3))
    x = base_inputs
    for name in ("a", "b"):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn", **bn_config)(x)
        x = keras.layers.ReLU()(x)
    base = keras.Model(base_inputs, x, name="base")
    randomize_batch_norms(base)
    inputs = keras.Input((8, 8, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="transfer"), base


def device_copies(variable):
    """The value of each device's copy of `variable`, as numpy arrays.

    A JAX variable under `DataParallel` is one array sharded over the
    devices; a TensorFlow one under `MirroredStrategy` is a mirrored
    variable holding one copy per replica.
    """
    value = variable.value
    if hasattr(value, "addressable_shards"):
        copies = [np.asarray(shard.data) for shard in value.addressable_shards]
    else:
        copies = [copy.numpy() for copy in value.values]
    assert len(copies) == DEVICE_COUNT, variable.path
    return copies


def statistics_variables(model):
    """The moving statistics of every BN layer in `model`, in model order."""
    return [
        variable
        for layer in _walk.batch_norm_layers(model)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


def bn_first_model(momentum, **bn_config):
    """A BN on the raw inputs, so its batch statistics are the data's."""
    inputs = keras.Input((4,))
    bn = keras.layers.BatchNormalization(momentum=momentum, **bn_config)
    outputs = keras.layers.Dense(1)(bn(inputs))
    return keras.Model(inputs, outputs), bn


def shifted_halves(count=16, seed=0):
    """Inputs whose two halves (one per replica) differ in statistics."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 4)).astype("float32")
    x[count // 2 :] = x[count // 2 :] * 3 + 5
    return x


def assert_reports_close(report, expected):
    """Two `DiagnosisReport`s agree: verdict, per-layer findings, figures."""
    assert (report.samples, report.task, report.flagged) == (
        expected.samples,
        expected.task,
        expected.flagged,
    )
    np.testing.assert_allclose(report.output_gap, expected.output_gap, 1e-4)
    for metrics, reference in (
        (report.inference, expected.inference),
        (report.training, expected.training),
    ):
        assert metrics.keys() == reference.keys()
        for key, value in metrics.items():
            np.testing.assert_allclose(value, reference[key], 1e-4, 1e-6)
    for got, want in zip(report.layers, expected.layers, strict=True):
        assert (got.name, got.fit_behaviour, got.drifted, got.at_risk) == (
            want.name,
            want.fit_behaviour,
            want.drifted,
            want.at_risk,
        )
        np.testing.assert_allclose(
            [got.mean_shift, got.variance_ratio],
            [want.mean_shift, want.variance_ratio],
            rtol=1e-4,
        )


def assert_every_copy_holds_statistics_of(model, reference, copies_of):
    """Every device's copy of `model`'s statistics is `reference`'s (one
    device), within float32 round-off, and the copies agree bitwise."""
    for variable, expected in zip(
        statistics_variables(model),
        statistics_variables(reference),
        strict=True,
    ):
        first, *others = copies_of(variable)
        for other in others:
            np.testing.assert_array_equal(other, first)
        np.testing.assert_allclose(
            first, keras.ops.convert_to_numpy(expected), rtol=1e-5, atol=1e-6
        )


def check_recalibrate_matches_one_device(scope, copies_of):
    """`recalibrate` in `scope` writes the single-device statistics to every
    copy of them; `copies_of(variable)` lists a variable's per-device values.
    """
    import frozen_bn

    x = images(count=40)
    reference, _ = transfer_model()
    with scope:
        model, _ = transfer_model()
        model.set_weights(reference.get_weights())
        frozen_bn.recalibrate(model, x, batch_size=16, verbose=0)
    frozen_bn.recalibrate(reference, x, batch_size=16, verbose=0)
    assert_every_copy_holds_statistics_of(model, reference, copies_of)


def check_diagnose_matches_one_device(scope, assert_copies_hold):
    """`diagnose` in `scope` reports what it reports on one device and
    writes nothing: `assert_copies_hold(variables, values)` checks every
    device's copy.
    """
    import frozen_bn

    x, y = images(count=40), labels(count=40)
    reference, _ = transfer_model()
    with scope:
        model, _ = transfer_model()
        model.set_weights(reference.get_weights())
        before = [keras.ops.convert_to_numpy(v) for v in model.weights]
        report = frozen_bn.diagnose(model, x, y, batch_size=16, verbose=0)
    expected = frozen_bn.diagnose(reference, x, y, batch_size=16, verbose=0)
    assert_reports_close(report, expected)
    assert_copies_hold(model.weights, before)


def check_callbacks_in_fit(scope, copies_of):
    """The callbacks in `fit()` in `scope`: `PreciseBN` leaves on every
    device the statistics `recalibrate` measures on one device, the guard
    stays silent on a frozen layer, and `ModeGapMonitor` logs the gap that
    `diagnose` reports on one device; `copies_of(variable)` lists a
    variable's per-device values.
    """
    import frozen_bn
    from frozen_bn.callbacks import (
        FrozenStatisticsGuard,
        ModeGapMonitor,
        PreciseBN,
    )

    def build():
        keras.utils.set_random_seed(3)
        inputs = keras.Input((4,))
        x = frozen_bn.BatchNormalization(trainable=False, name="frozen")(inputs)
        x = keras.layers.BatchNormalization(momentum=0.5, name="trains")(x)
        model = keras.Model(inputs, keras.layers.Dense(1)(x))
        return randomize_batch_norms(model)

    x = shifted_halves(count=32)
    y = np.random.default_rng(1).standard_normal((32, 1)).astype("float32")
    with scope:
        model = build()
        model.compile("sgd", "mse")
        history = model.fit(
            x,
            y,
            batch_size=8,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[
                PreciseBN(x, batch_size=8, verbose=0),
                ModeGapMonitor(x, batch_size=8),
                FrozenStatisticsGuard(on_change="raise", freq=1),
            ],
        )
    reference = build()
    reference.set_weights(model.get_weights())
    report = frozen_bn.diagnose(reference, x, batch_size=8, verbose=0)
    np.testing.assert_allclose(
        history.history["mode_gap"][-1], report.output_gap, 1e-4
    )
    frozen_bn.recalibrate(
        reference, x, layers=["trains"], batch_size=8, verbose=0
    )
    assert_every_copy_holds_statistics_of(model, reference, copies_of)
