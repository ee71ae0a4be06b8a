"""frozen_bn under `tf.distribute.MirroredStrategy` with two CPU replicas."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import frozen_bn
from frozen_bn import _walk
from tests.helpers import images, to_numpy
from tests.multi_device_models import (
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


def assert_replicas_hold(variables, expected):
    """Every replica's copy of each variable is bitwise `expected`."""
    for variable, value in zip(variables, expected, strict=True):
        for copy in device_copies(variable):
            np.testing.assert_array_equal(copy, value, err_msg=variable.path)


def assert_replicas_agree(variables):
    for variable in variables:
        first, *others = device_copies(variable)
        for copy in others:
            np.testing.assert_array_equal(copy, first, err_msg=variable.path)


def patched_transfer_model(strategy, **bn_config):
    """The transfer-learning model, patched and compiled in `strategy`."""
    with strategy.scope():
        model, _ = transfer_model(**bn_config)
        model = frozen_bn.patch_model(model)
        model.compile(
            keras.optimizers.RMSprop(1e-3), "sparse_categorical_crossentropy"
        )
    return model, model.get_layer("base")


def test_strategy_has_two_replicas(strategy):
    assert strategy.num_replicas_in_sync == 2


def test_frozen_layer_on_each_replica_matches_stock_inference(strategy):
    x = images(count=8)
    with strategy.scope():
        model, base = transfer_model()
        patched = frozen_bn.patch_model(base)
    patched.trainable = False
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    def on_replicas(model, training):
        outputs = strategy.run(
            lambda xs: model(xs, training=training), (batch,)
        )
        shards = strategy.experimental_local_results(outputs)
        return np.concatenate([to_numpy(shard) for shard in shards])

    # Stock inference on the same per-replica batches: a convolution over
    # half the batch may round differently from one over all of it.
    np.testing.assert_array_equal(
        on_replicas(patched, training=True), on_replicas(base, training=False)
    )


def test_patch_model_in_scope_keeps_weights_mirrored(strategy):
    with strategy.scope():
        model, _ = transfer_model()
        patched = frozen_bn.patch_model(model)
    assert all(
        type(layer) is OURS for layer in _walk.batch_norm_layers(patched)
    )
    assert len(patched.weights) == len(model.weights)
    assert_replicas_hold(patched.weights, [to_numpy(v) for v in model.weights])


def test_patch_model_outside_scope_copies_into_the_models_strategy(strategy):
    with strategy.scope():
        model, _ = transfer_model()
    patched = frozen_bn.patch_model(model)
    assert patched.distribute_strategy is strategy
    assert_replicas_hold(patched.weights, [to_numpy(v) for v in model.weights])


@pytest.mark.slow
def test_patch_model_in_scope_on_keras_application(strategy):
    with strategy.scope():
        model = keras.applications.MobileNetV2(
            input_shape=(32, 32, 3), alpha=0.35, weights=None
        )
        patched = frozen_bn.patch_model(model)
    bns = _walk.batch_norm_layers(patched)
    assert len(bns) == len(_walk.batch_norm_layers(model)) > 0
    assert all(type(layer) is OURS for layer in bns)
    assert_replicas_hold(
        statistics_variables(patched),
        [to_numpy(v) for v in statistics_variables(model)],
    )


def test_patch_and_unpatch_preserve_synchronized(strategy):
    with strategy.scope():
        model, _ = transfer_model(synchronized=True)
        patched = frozen_bn.patch_model(model)
        unpatched = frozen_bn.unpatch_model(patched)
    for layer in _walk.batch_norm_layers(patched):
        assert layer.synchronized and layer.get_config()["synchronized"]
    for layer in _walk.batch_norm_layers(unpatched):
        assert type(layer) is keras.layers.BatchNormalization
        assert layer.synchronized and layer.get_config()["synchronized"]


@pytest.mark.parametrize("synchronized", [False, True])
@pytest.mark.parametrize("stage", ["new_top", "fine_tune"])
def test_frozen_statistics_unchanged_on_every_replica_after_fit(
    strategy, synchronized, stage
):
    model, base = patched_transfer_model(strategy, synchronized=synchronized)
    statistics = statistics_variables(base)
    before = [to_numpy(v) for v in statistics]
    kernel = to_numpy(model.layers[-1].kernel)
    if stage == "fine_tune":
        base.trainable = True  # gamma/beta train; statistics stay frozen
        with strategy.scope():
            model.compile(
                keras.optimizers.SGD(1e-2, momentum=0.9),
                "sparse_categorical_crossentropy",
            )
    else:
        base.trainable = False
    model.fit(images(), labels(), batch_size=8, epochs=2, verbose=0)
    assert not np.array_equal(to_numpy(model.layers[-1].kernel), kernel)
    assert_replicas_hold(statistics, before)


def test_stock_unsynchronized_statistics_drift_apart_across_replicas(
    strategy,
):
    # Why frozen_bn averages the statistics of unsynchronized layers: Keras
    # 3 lets each replica write its own copy.
    with strategy.scope():
        model, bn = bn_first_model(momentum=0.5)
        model.compile(keras.optimizers.SGD(0.0), "mse")
    x = shifted_halves()
    model.fit(x, np.zeros((16, 1)), batch_size=16, shuffle=False, verbose=0)
    first, second = device_copies(bn.moving_variance)
    assert not np.allclose(first, second)


class RecordReplicas(keras.callbacks.Callback):
    """Records each replica's copy of `variables` after every batch."""

    def __init__(self, variables):
        super().__init__()
        self.variables = variables
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([device_copies(v) for v in self.variables])


@pytest.mark.parametrize("synchronized", [False, True])
def test_unfrozen_statistics_agree_across_replicas_after_each_step(
    strategy, synchronized
):
    model, base = patched_transfer_model(strategy, synchronized=synchronized)
    for layer in _walk.batch_norm_layers(base):
        layer.freeze_moving_stats = False
    with strategy.scope():
        model.compile(
            keras.optimizers.SGD(1e-2), "sparse_categorical_crossentropy"
        )
    statistics = statistics_variables(base)
    before = [to_numpy(v) for v in statistics]
    record = RecordReplicas(statistics)
    model.fit(images(), labels(), batch_size=8, verbose=0, callbacks=[record])
    assert len(record.steps) == 4
    for step in record.steps:
        for first, second in step:
            np.testing.assert_array_equal(first, second)
    assert not np.array_equal(record.steps[-1][0][0], before[0])


def halves_statistics(x):
    """Mean and variance of each half of `x` (one half per replica)."""
    halves = np.split(x.astype("float64"), 2)
    return (
        np.stack([h.mean(axis=0) for h in halves]),
        np.stack([h.var(axis=0) for h in halves]),
    )


@pytest.mark.parametrize("synchronized", [False, True])
def test_one_step_updates_statistics_as_the_replicas_see_the_batch(
    strategy, synchronized
):
    momentum = 0.5
    with strategy.scope():
        model, bn = bn_first_model(momentum, synchronized=synchronized)
        frozen_bn.patch_model(model, freeze_moving_stats=False, inplace=True)
        model.compile(keras.optimizers.SGD(0.0), "mse")
    x = shifted_halves()
    model.fit(x, np.zeros((16, 1)), batch_size=16, shuffle=False, verbose=0)
    if synchronized:  # the global batch's statistics, as on one device
        mean, variance = x.mean(0, dtype="float64"), x.var(0, dtype="float64")
    else:  # each replica's own statistics, averaged over the replicas
        means, variances = halves_statistics(x)
        mean, variance = means.mean(0), variances.mean(0)
    for copy in device_copies(bn.moving_mean):
        np.testing.assert_allclose(copy, (1 - momentum) * mean, rtol=1e-5)
    for copy in device_copies(bn.moving_variance):
        expected = momentum * 1.0 + (1 - momentum) * variance
        np.testing.assert_allclose(copy, expected, rtol=1e-5)


def collective_ops(strategy, layer, x):
    """How many collective ops a training-mode call of `layer` traces."""
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(len(x))
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    step = tf.function(
        lambda b: strategy.run(lambda xs: layer(xs, training=True), (b,))
    )
    graph = step.get_concrete_function(batch).graph
    counts = collections.Counter(op.type for op in graph.get_operations())
    return sum(n for kind, n in counts.items() if "Collective" in kind)


@pytest.mark.parametrize(
    "synchronized, trainable, freeze_moving_stats, expected",
    [
        (True, False, False, 0),
        (True, True, True, 0),
        (False, False, False, 0),
        (False, True, True, 0),
    ],
)
def test_frozen_layer_makes_no_cross_replica_calls(
    strategy, synchronized, trainable, freeze_moving_stats, expected
):
    with strategy.scope():
        layer = OURS(
            synchronized=synchronized, freeze_moving_stats=freeze_moving_stats
        )
        layer.build((None, 4))
    layer.trainable = trainable
    assert collective_ops(strategy, layer, shifted_halves()) == expected


@pytest.mark.parametrize("synchronized", [False, True])
def test_training_layer_reduces_across_replicas(strategy, synchronized):
    # The counterpart of the test above: the method sees cross-replica calls.
    with strategy.scope():
        layer = OURS(synchronized=synchronized)
        layer.build((None, 4))
    assert collective_ops(strategy, layer, shifted_halves()) > 0


def test_recalibrate_in_scope_matches_one_device(strategy):
    check_recalibrate_matches_one_device(strategy.scope(), device_copies)


def test_diagnose_in_scope_matches_one_device_and_writes_nothing(strategy):
    check_diagnose_matches_one_device(strategy.scope(), assert_replicas_hold)


def test_callbacks_in_fit_match_one_device(strategy):
    check_callbacks_in_fit(strategy.scope(), device_copies)
