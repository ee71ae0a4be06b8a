"""Tests for `frozen_bn.tf_keras` in TF1 graph mode, where the bug lives.

`conftest.py` switches this process to graph mode: layers are called once,
when a model is built, and the learning phase is a placeholder fed at run
time (or a constant, after `tf_keras.backend.set_learning_phase`).
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import frozen_bn
from frozen_bn import _copying, _runtime, _walk
from frozen_bn import tf_keras as frozen_tf_keras
from frozen_bn._reading import ModelReading
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    moving_statistics,
)
from tests.tf_keras_models import (
    BN_CONFIGS,
    STOCK_V1,
    STOCK_V2,
    bn_state,
    conv_net,
    nested_net,
    targets,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
OURS = (
    frozen_tf_keras.BatchNormalization,
    frozen_tf_keras.BatchNormalizationV1,
)


def outputs_by_phase(model, x):
    """`model`'s outputs on `x` at learning phase 1 and 0, in one graph."""
    run = tf_keras.backend.function(
        [model.input, tf_keras.backend.learning_phase()], [model.output]
    )
    return run([x, 1])[0], run([x, 0])[0]


def train_inference_gap(model, x):
    train, inference = outputs_by_phase(model, x)
    return np.abs(train - inference).max()


def fit(model, epochs=1, callbacks=None):
    model.compile("sgd", "mse")
    model.fit(
        images(16),
        targets(),
        batch_size=8,
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )


def test_runs_in_graph_mode():
    assert not tf.compat.v1.executing_eagerly_outside_functions()
    assert _runtime.builds_static_graphs()


def test_stock_v1_uses_batch_statistics_when_frozen():
    model = conv_net(STOCK_V1)
    model.get_layer("bn").trainable = False
    assert train_inference_gap(model, images(16)) > 0.1


def test_stock_v2_ignores_trainable_set_after_build():
    model = conv_net(STOCK_V2)
    model.get_layer("bn").trainable = False
    assert train_inference_gap(model, images(16)) > 0.1


def test_loading_a_model_gives_stock_v1_layers(tmp_path):
    path = str(tmp_path / "model.h5")
    conv_net(STOCK_V2).save(path)
    loaded = tf_keras.models.load_model(path)
    assert type(loaded.get_layer("bn")) is STOCK_V1


@pytest.mark.parametrize("config", list(BN_CONFIGS), ids=list(BN_CONFIGS))
@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_frozen_outputs_agree_across_learning_phases(bn_class, config):
    model = conv_net(bn_class, **BN_CONFIGS[config])
    x = images(16)
    assert train_inference_gap(model, x) > 0.1
    model.get_layer("bn").trainable = False
    train, inference = outputs_by_phase(model, x)
    np.testing.assert_array_equal(train, inference)


@pytest.mark.parametrize("config", list(BN_CONFIGS), ids=list(BN_CONFIGS))
@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_fit_leaves_frozen_moving_statistics_bitwise_unchanged(
    bn_class, config
):
    model = conv_net(bn_class, **BN_CONFIGS[config])
    model.get_layer("bn").trainable = False
    before = moving_statistics(model)[0]
    fit(model, epochs=2)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)


@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_fit_updates_moving_statistics_when_not_frozen(bn_class):
    model = conv_net(bn_class)
    before = moving_statistics(model)[0]
    fit(model)
    assert not np.array_equal(moving_statistics(model)[0][0], before[0])


def test_trainable_change_after_build_takes_effect_after_compile():
    model = conv_net(frozen_tf_keras.BatchNormalizationV1)
    x = images(16)
    fit(model)
    model.trainable = False
    before = moving_statistics(model)[0]
    fit(model)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)
    assert train_inference_gap(model, x) == 0
    model.get_layer("bn").trainable = True
    assert train_inference_gap(model, x) > 0.1
    fit(model)
    assert not np.array_equal(moving_statistics(model)[0][0], before[0])


def test_freeze_moving_stats_change_after_build_takes_effect():
    model = conv_net(frozen_tf_keras.BatchNormalization)
    bn = model.get_layer("bn")
    bn.freeze_moving_stats = True
    before, gamma = (
        moving_statistics(model)[0],
        tf_keras.backend.get_value(bn.gamma),
    )
    fit(model)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)
    assert not np.array_equal(tf_keras.backend.get_value(bn.gamma), gamma)


@pytest.mark.parametrize(
    "bn_class, frozen_has_gap",
    [(STOCK_V1, True), *((ours, False) for ours in OURS)],
    ids=["stock_v1", "v2", "v1"],
)
def test_static_learning_phase_one(bn_class, frozen_has_gap):
    tf_keras.backend.set_learning_phase(1)
    model = conv_net(bn_class)
    model.get_layer("bn").trainable = False
    x = images(16)
    train = tf_keras.backend.function([model.input], [model.output])([x])[0]
    tf_keras.backend.set_learning_phase(0)
    reference = _copying.copy_tf_keras_model(model)
    inference = reference.predict(x, verbose=0)
    if frozen_has_gap:
        assert np.abs(train - inference).max() > 0.1
    else:
        np.testing.assert_allclose(train, inference, rtol=1e-6, atol=1e-6)


def test_patch_model_fixes_a_frozen_stock_v1_model():
    model = nested_net(STOCK_V1)
    before, state = all_weights(model), bn_state(model)
    patched = frozen_bn.patch_model(model)
    assert_weights_bitwise_equal(before, all_weights(model))
    assert bn_state(model) == state
    assert_weights_bitwise_equal(before, all_weights(patched))
    ours = frozen_tf_keras.BatchNormalizationV1
    assert bn_state(patched) == [(name, ours, t) for name, _, t in state]
    patched.trainable = False
    train, inference = outputs_by_phase(patched, images(16))
    np.testing.assert_array_equal(train, inference)
    np.testing.assert_array_equal(
        inference, model.predict(images(16), verbose=0)
    )


def test_patch_then_unpatch_gives_back_the_stock_model():
    model = nested_net(STOCK_V2)
    restored = frozen_bn.unpatch_model(frozen_bn.patch_model(model))
    assert bn_state(restored) == bn_state(model)
    assert_weights_bitwise_equal(all_weights(model), all_weights(restored))
    np.testing.assert_array_equal(
        restored.predict(images(16), verbose=0),
        model.predict(images(16), verbose=0),
    )


@pytest.mark.parametrize("function", ["patch_model", "unpatch_model"])
def test_inplace_is_rejected(function):
    model = conv_net(STOCK_V1)
    with pytest.raises(ValueError, match="Received: inplace=True"):
        getattr(frozen_bn, function)(model, inplace=True)
    assert type(model.get_layer("bn")) is STOCK_V1


def test_called_in_inference_mode_freezes_moving_stats():
    base = tf_keras.Sequential(
        [tf_keras.Input((8, 8, 3)), STOCK_V1(name="bn")], name="base"
    )
    inputs = tf_keras.Input((8, 8, 3))
    x = base(inputs, training=False)
    model = tf_keras.Model(inputs, STOCK_V1(name="head_bn")(x))
    assert ModelReading(model).called_in_inference_mode() == [base.layers[0]]
    flags = {
        layer.name: layer.freeze_moving_stats
        for layer in _walk.batch_norm_layers(frozen_bn.patch_model(model))
    }
    assert flags == {"bn": True, "head_bn": False}


@pytest.mark.parametrize("suffix", [".h5", "_savedmodel"])
def test_patched_model_saves_and_loads(tmp_path, suffix):
    model = frozen_bn.patch_model(nested_net(STOCK_V1))
    model.trainable = False
    path = str(tmp_path / f"model{suffix}")
    model.save(path, save_format="h5" if suffix == ".h5" else "tf")
    loaded = tf_keras.models.load_model(path)
    assert bn_state(loaded) == bn_state(model)
    assert_weights_bitwise_equal(all_weights(model), all_weights(loaded))
    train, inference = outputs_by_phase(loaded, images(16))
    np.testing.assert_array_equal(train, inference)


IMPORTED_BEFORE_GRAPH_MODE = """
import numpy as np
import tensorflow as tf
import tf_keras
import frozen_bn
from tests.helpers import images
from tests.tf_keras_models import conv_net

tf.compat.v1.disable_v2_behavior()
model = tf_keras.Model.from_config(conv_net(tf_keras.layers.BatchNormalization)
                                   .get_config())
patched = frozen_bn.patch_model(model)
patched.trainable = False
run = tf_keras.backend.function(
    [patched.input, tf_keras.backend.learning_phase()], [patched.output]
)
print(type(model.get_layer("bn")).__module__.rsplit(".", 1)[-1])
print(type(patched.get_layer("bn")).__name__)
print(np.array_equal(run([images(16), 1])[0], run([images(16), 0])[0]))
"""


def test_patching_works_when_tf_keras_is_imported_before_graph_mode():
    output = subprocess.run(
        [sys.executable, "-c", IMPORTED_BEFORE_GRAPH_MODE],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    lines = output.stdout.split()
    assert lines == [
        "batch_normalization_v1",
        "BatchNormalizationV1",
        "True",
    ], output.stderr[-2000:]


def test_freeze_in_graph_mode():
    model = conv_net(STOCK_V1)
    with pytest.raises(ValueError, match="TF1 graph mode"):
        frozen_bn.freeze(model, up_to="bn", inplace=True)
    frozen = frozen_bn.freeze(model, up_to="bn")
    assert train_inference_gap(frozen, images(16)) == 0
    kept = all_weights(frozen)[:-2]  # conv and bn; Dense trains.
    dense = frozen.layers[-1].get_weights()[0]

    fit(frozen)

    assert_weights_bitwise_equal(kept, all_weights(frozen)[:-2])
    assert not np.array_equal(frozen.layers[-1].get_weights()[0], dense)
    # A patched model's flags live in its graph: inplace works there.
    unfrozen = frozen_bn.unfreeze(frozen, inplace=True)
    assert unfrozen is frozen
    assert train_inference_gap(unfrozen, images(16)) > 0.1


def test_guard_raises_on_the_original_keras_bug():
    model = conv_net(STOCK_V1)
    model.get_layer("bn").trainable = False
    guard = frozen_tf_keras.FrozenStatisticsGuard(on_change="raise")
    with pytest.raises(frozen_bn.callbacks.FrozenStatisticsError, match="bn"):
        model.compile("sgd", "mse")
        model.fit(
            images(16), targets(), batch_size=8, callbacks=[guard], verbose=0
        )


def test_guard_is_silent_on_frozen_bn_and_sees_planted_drift():
    model = conv_net(frozen_tf_keras.BatchNormalizationV1)
    bn = model.get_layer("bn")
    bn.trainable = False
    guard = frozen_tf_keras.FrozenStatisticsGuard(on_change="raise", freq=1)
    fit(model, epochs=2, callbacks=[guard])
    assert guard.moved_layers() == []
    mean, variance = moving_statistics(model)[0]
    tf_keras.backend.set_value(bn.moving_mean, mean + 1.0)
    [(layer, shift, ratio)] = guard.moved_layers()
    expected = np.sqrt(np.mean(1.0 / (variance + bn.epsilon)))
    assert layer is bn and ratio == 1.0
    np.testing.assert_allclose(shift, expected, rtol=1e-5)


def test_precise_bn_needs_eager_mode():
    model = conv_net(STOCK_V2)
    precise = frozen_tf_keras.PreciseBN(images(16), verbose=0)
    with pytest.raises(ValueError, match="TF1 graph mode"):
        fit(model, callbacks=[precise])
