"""Tests for `frozen_bn.tf_keras` in eager mode (TF1 graph mode: graph_mode/).

tf_keras needs TensorFlow, so these run in the tensorflow backend's run.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest

if keras.backend.backend() != "tensorflow":
    pytest.skip("tf_keras needs TensorFlow", allow_module_level=True)
tf_keras = pytest.importorskip("tf_keras")

import frozen_bn  # noqa: E402
from frozen_bn import _walk  # noqa: E402
from frozen_bn import tf_keras as frozen_tf_keras  # noqa: E402
from frozen_bn._reading import ModelReading  # noqa: E402
from tests.helpers import (  # noqa: E402
    all_weights,
    assert_weights_bitwise_equal,
    images,
    moving_statistics,
)
from tests.tf_keras_models import (  # noqa: E402
    BN_CONFIGS,
    PATCHED_CLASSES,
    STOCK_V1,
    STOCK_V2,
    bn_state,
    conv_net,
    nested_net,
    targets,
)

OURS = (
    frozen_tf_keras.BatchNormalization,
    frozen_tf_keras.BatchNormalizationV1,
)


@pytest.fixture(autouse=True)
def _fresh_tf_keras_session():
    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(1337)
    yield
    tf_keras.backend.clear_session()


def train_inference_gap(model, x):
    train = model(x, training=True).numpy()
    return np.abs(train - model(x, training=False).numpy()).max()


def test_import_frozen_bn_does_not_import_tf_keras():
    code = "import sys, frozen_bn; print('tf_keras' in sys.modules)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    assert output.stdout.strip() == "False", output.stderr


def test_stock_v1_uses_batch_statistics_when_frozen():
    model = conv_net(STOCK_V1)
    model.get_layer("bn").trainable = False
    assert train_inference_gap(model, images(16)) > 0.1


@pytest.mark.parametrize("config", list(BN_CONFIGS), ids=list(BN_CONFIGS))
@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_frozen_training_output_equals_inference_output(bn_class, config):
    model = conv_net(bn_class, **BN_CONFIGS[config])
    model.get_layer("bn").trainable = False
    assert train_inference_gap(model, images(16)) == 0


@pytest.mark.parametrize("config", list(BN_CONFIGS), ids=list(BN_CONFIGS))
@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_unfrozen_matches_stock_bitwise(bn_class, config):
    stock_class = bn_class._stock_class
    stock = conv_net(stock_class, **BN_CONFIGS[config])
    ours = conv_net(bn_class, **BN_CONFIGS[config])
    ours.set_weights(stock.get_weights())
    x = images(16)
    np.testing.assert_array_equal(
        ours(x, training=True).numpy(), stock(x, training=True).numpy()
    )


@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_fit_leaves_frozen_moving_statistics_bitwise_unchanged(bn_class):
    model = conv_net(bn_class)
    model.get_layer("bn").trainable = False
    before = moving_statistics(model)[0]
    model.compile("sgd", "mse")
    model.fit(images(16), targets(), batch_size=8, epochs=2, verbose=0)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)


def test_freeze_moving_stats_keeps_statistics_and_trains_gamma():
    model = conv_net(frozen_tf_keras.BatchNormalization)
    bn = model.get_layer("bn")
    bn.freeze_moving_stats = True
    before, gamma = (
        moving_statistics(model)[0],
        bn.gamma.numpy(),
    )
    model.compile("sgd", "mse")
    model.fit(images(16), targets(), batch_size=8, epochs=2, verbose=0)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)
    assert not np.array_equal(bn.gamma.numpy(), gamma)


def test_trainable_change_after_build_takes_effect_after_compile():
    model = conv_net(frozen_tf_keras.BatchNormalization)
    x, y = images(16), targets()
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=8, verbose=0)
    before = moving_statistics(model)[0]
    model.get_layer("bn").trainable = False
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=8, verbose=0)
    for stat, old in zip(moving_statistics(model)[0], before, strict=True):
        np.testing.assert_array_equal(stat, old)
    model.trainable = True
    model.compile("sgd", "mse")
    model.fit(x, y, batch_size=8, verbose=0)
    assert not np.array_equal(moving_statistics(model)[0][0], before[0])


@pytest.mark.parametrize("value", [1, None, "yes"])
def test_freeze_moving_stats_must_be_a_bool(value):
    with pytest.raises(TypeError, match="Received: freeze_moving_stats="):
        frozen_tf_keras.BatchNormalization(freeze_moving_stats=value)


@pytest.mark.parametrize("bn_class", OURS, ids=["v2", "v1"])
def test_get_config_round_trip(bn_class):
    layer = bn_class(momentum=0.5, freeze_moving_stats=True, trainable=False)
    clone = bn_class.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.freeze_moving_stats is True
    assert clone.trainable is False


@pytest.mark.parametrize("stock_class", [STOCK_V2, STOCK_V1], ids=["v2", "v1"])
def test_patch_model_swaps_classes_and_keeps_weights(stock_class):
    model = nested_net(stock_class)
    model.get_layer("base").trainable = False
    before, state = all_weights(model), bn_state(model)

    patched = frozen_bn.patch_model(model)

    assert_weights_bitwise_equal(before, all_weights(model))
    assert bn_state(model) == state
    assert_weights_bitwise_equal(before, all_weights(patched))
    assert patched.get_layer("base").trainable is False
    ours = PATCHED_CLASSES[stock_class]
    assert bn_state(patched) == [(name, ours, t) for name, _, t in state]
    x = images(16)
    np.testing.assert_array_equal(
        patched(x, training=False).numpy(), model(x, training=False).numpy()
    )
    assert train_inference_gap(patched.get_layer("base"), x) == 0


def test_unpatch_model_restores_stock_classes():
    model = nested_net(STOCK_V1)
    restored = frozen_bn.unpatch_model(frozen_bn.patch_model(model))
    assert bn_state(restored) == bn_state(model)
    assert_weights_bitwise_equal(all_weights(model), all_weights(restored))
    x = images(16)
    np.testing.assert_array_equal(
        restored(x, training=False).numpy(), model(x, training=False).numpy()
    )


def test_patch_model_inplace_returns_the_model():
    model = conv_net(STOCK_V1)
    before = all_weights(model)
    assert frozen_bn.patch_model(model, inplace=True) is model
    assert type(model.get_layer("bn")) is frozen_tf_keras.BatchNormalizationV1
    assert_weights_bitwise_equal(before, all_weights(model))
    frozen_bn.unpatch_model(model, inplace=True)
    assert type(model.get_layer("bn")) is STOCK_V1
    assert model.get_layer("bn").trainable is True


def test_called_in_inference_mode_freezes_moving_stats():
    base = tf_keras.Sequential(
        [tf_keras.Input((8, 8, 3)), STOCK_V2(name="bn")], name="base"
    )
    inputs = tf_keras.Input((8, 8, 3))
    x = base(inputs, training=False)
    x = STOCK_V2(name="head_bn")(x)
    model = tf_keras.Model(inputs, x)
    assert ModelReading(model).called_in_inference_mode() == [base.layers[0]]
    patched = frozen_bn.patch_model(model)
    flags = {
        layer.name: layer.freeze_moving_stats
        for layer in _walk.batch_norm_layers(patched)
    }
    assert flags == {"bn": True, "head_bn": False}


@pytest.mark.parametrize("suffix", [".h5", "_savedmodel"])
def test_patched_model_saves_and_loads(tmp_path, suffix):
    model = frozen_bn.patch_model(
        nested_net(STOCK_V1), freeze_moving_stats=True
    )
    model.get_layer("base").trainable = False
    path = str(tmp_path / f"model{suffix}")
    model.save(path, save_format="h5" if suffix == ".h5" else "tf")
    loaded = tf_keras.models.load_model(path)
    assert bn_state(loaded) == bn_state(model)
    assert all(
        layer.freeze_moving_stats for layer in _walk.batch_norm_layers(loaded)
    )
    assert_weights_bitwise_equal(all_weights(model), all_weights(loaded))
    x = images(16)
    np.testing.assert_array_equal(
        loaded(x, training=True).numpy(), model(x, training=True).numpy()
    )


def test_patch_model_rejects_a_subclassed_model():
    class Net(tf_keras.Model):
        def __init__(self):
            super().__init__()
            self.bn = STOCK_V1()

        def call(self, x):
            return self.bn(x)

    model = Net()
    model(images(16))
    with pytest.raises(ValueError, match="Cannot copy `model` of type Net"):
        frozen_bn.patch_model(model)


@pytest.mark.parametrize(
    "bn_class",
    [STOCK_V2, STOCK_V1, frozen_tf_keras.BatchNormalization],
    ids=["stock_v2", "stock_v1", "frozen_bn"],
)
def test_recalibrate_sets_population_statistics(bn_class):
    model = conv_net(bn_class, fused=False)
    bn = model.get_layer("bn")
    bn.trainable = False
    x = images(count=21)  # 8 + 8 + an uneven 5
    conv = tf_keras.Model(model.inputs, model.get_layer("conv").output)
    bn_inputs = conv.predict(x, verbose=0).astype("float64")
    others = [w.numpy() for w in model.weights if "moving" not in w.name]

    frozen_bn.recalibrate(model, x, batch_size=8, verbose=0)

    np.testing.assert_allclose(
        bn.moving_mean.numpy(), bn_inputs.mean(axis=(0, 1, 2)), rtol=1e-5
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), bn_inputs.var(axis=(0, 1, 2)), rtol=1e-4
    )
    after = [w.numpy() for w in model.weights if "moving" not in w.name]
    for old, new in zip(others, after, strict=True):
        np.testing.assert_array_equal(new, old)
    assert bn.trainable is False


@pytest.mark.parametrize(
    "up_to", ["base", 1, lambda layer: layer.name == "base"]
)
def test_freeze_keeps_the_base_and_the_statistics_fixed_under_fit(up_to):
    model = nested_net(STOCK_V2)
    original = all_weights(model)
    frozen = frozen_bn.freeze(model, up_to=up_to)
    base, head_bn = frozen.get_layer("base"), frozen.get_layer("head_bn")
    base_weights, statistics = all_weights(base), moving_statistics(head_bn)
    gamma = head_bn.gamma.numpy()

    frozen.compile("sgd", "mse")
    frozen.fit(images(16), targets(), batch_size=8, verbose=0)

    assert_weights_bitwise_equal(base_weights, all_weights(base))
    for stat, old in zip(
        moving_statistics(head_bn)[0], statistics[0], strict=True
    ):
        np.testing.assert_array_equal(stat, old)
    assert not np.array_equal(head_bn.gamma.numpy(), gamma)
    assert_weights_bitwise_equal(original, all_weights(model))
    unfrozen = frozen_bn.unfreeze(frozen)
    assert [layer.trainable for layer in _walk.iter_layers(unfrozen)] == [
        layer.trainable for layer in _walk.iter_layers(model)
    ]


def test_freeze_by_stages_is_for_keras_3_models_only():
    with pytest.raises(
        TypeError, match=r"`model` to be a keras\.Model\. Received"
    ):
        frozen_bn.freeze(conv_net(STOCK_V2), stages=1)


# The callbacks' tf_keras twins, in eager mode.


def fit_conv_net(model, callbacks, epochs=2):
    model.compile("sgd", "mse")
    return model.fit(
        images(16),
        targets(),
        batch_size=8,
        epochs=epochs,
        callbacks=callbacks,
        verbose=0,
    )


def test_guard_raises_on_a_frozen_stock_v1_layer():
    model = conv_net(STOCK_V1)
    model.get_layer("bn").trainable = False
    guard = frozen_tf_keras.FrozenStatisticsGuard(on_change="raise")
    with pytest.raises(frozen_bn.callbacks.FrozenStatisticsError, match="bn"):
        fit_conv_net(model, [guard])


def test_guard_is_silent_on_a_frozen_frozen_bn_layer():
    model = conv_net(frozen_tf_keras.BatchNormalizationV1)
    model.get_layer("bn").trainable = False
    guard = frozen_tf_keras.FrozenStatisticsGuard(on_change="raise", freq=1)
    fit_conv_net(model, [guard])
    assert guard.moved_layers() == []


def test_precise_bn_leaves_the_statistics_recalibrate_measures():
    model = conv_net(STOCK_V2)
    precise = frozen_tf_keras.PreciseBN(images(16), batch_size=8, verbose=0)
    fit_conv_net(model, [precise])
    reference = conv_net(STOCK_V2, name="reference")
    reference.set_weights(model.get_weights())
    frozen_bn.recalibrate(reference, images(16), batch_size=8, verbose=0)
    for got, expected in zip(
        moving_statistics(model), moving_statistics(reference), strict=True
    ):
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)


def test_mode_gap_monitor_logs_what_diagnose_reports():
    model = conv_net(STOCK_V1)
    model.get_layer("bn").trainable = False
    sample = images(16, seed=1)
    monitor = frozen_tf_keras.ModeGapMonitor(sample)
    history = fit_conv_net(model, [monitor], epochs=1)
    report = frozen_bn.diagnose(model, sample, verbose=0)
    assert history.history["mode_gap"] == [report.output_gap]
    assert report.output_gap > 0  # Stock V1 ignores trainable=False.
