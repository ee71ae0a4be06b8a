"""Tests for `patch_model` and `unpatch_model` on Keras 3 models."""

import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _training_arg, _walk
from frozen_bn._reading import ModelReading
from tests import guide_pattern, keras_hub_models
from tests.helpers import (
    ConvBlock,
    all_weights,
    assert_weights_bitwise_equal,
    moving_statistics,
    randomize_batch_norms,
    to_numpy,
)

STOCK = keras.layers.BatchNormalization
OURS = frozen_bn.BatchNormalization


def conv_block(x, name):
    x = keras.layers.Conv2D(
        4, 3, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def functional_net():
    inputs = keras.Input((8, 8, 3))
    x = conv_block(inputs, "a")
    x = conv_block(x, "b")
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name="functional")


def sequential_net():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(name="seq_bn"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ],
        name="sequential",
    )


def nested_net():
    """Three levels: a Sequential inside a Functional inside a Functional."""
    inner = keras.Sequential(
        [
            keras.Input((8, 8, 4)),
            keras.layers.BatchNormalization(name="inner_bn"),
        ],
        name="inner",
    )
    middle_in = keras.Input((8, 8, 3))
    middle = keras.Model(
        middle_in, inner(conv_block(middle_in, "mid")), name="middle"
    )
    inputs = keras.Input((8, 8, 3))
    x = conv_block(middle(inputs), "top")
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="nested")


def shared_net():
    shared_bn = keras.layers.BatchNormalization(name="shared_bn")
    inputs = keras.Input((8, 8, 3))
    left = shared_bn(keras.layers.Conv2D(4, 1, name="left")(inputs))
    right = shared_bn(keras.layers.Conv2D(4, 1, name="right")(inputs))
    outputs = keras.layers.Add()([left, right])
    return keras.Model(inputs, outputs, name="shared")


@keras.saving.register_keras_serializable(package="frozen_bn_tests")
class SubclassedNet(keras.Model):
    """BN layers held in an attribute, a list and a dict."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same")
        self.first_bn = keras.layers.BatchNormalization()
        self.blocks = [keras.layers.BatchNormalization() for _ in range(2)]
        self.heads = {"out": keras.layers.BatchNormalization()}

    def call(self, inputs, training=None):
        x = self.first_bn(self.conv(inputs), training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self.heads["out"](x, training=training)


def subclassed_net():
    model = SubclassedNet()
    model(np.zeros((1, 8, 8, 3), "float32"))
    return model


MODEL_KINDS = {
    "functional": functional_net,
    "sequential": sequential_net,
    "nested": nested_net,
    "shared": shared_net,
    "subclassed": subclassed_net,
}


def inputs_for(model, batch=4, seed=0):
    inputs = getattr(model, "inputs", None)  # subclassed models have none
    feature_shape = inputs[0].shape[1:] if inputs else (8, 8, 3)
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 2.0, (batch, *feature_shape)).astype("float32")


def predict(model, x, training=False):
    return to_numpy(model(x, training=training))


def layer_classes(model):
    return [type(layer) for layer in _walk.iter_layers(model)]


def trainable_flags(model):
    return [layer.trainable for layer in _walk.iter_layers(model)]


def snapshot(model):
    return all_weights(model), layer_classes(model), trainable_flags(model)


def assert_unchanged(model, before):
    weights, classes, flags = before
    assert_weights_bitwise_equal(weights, all_weights(model))
    assert layer_classes(model) == classes
    assert trainable_flags(model) == flags


def bn_types(model):
    return [type(layer) for layer in _walk.batch_norm_layers(model)]


@pytest.mark.parametrize("kind", sorted(MODEL_KINDS))
@pytest.mark.parametrize("inplace", [False, True])
def test_patch_and_unpatch_keep_predictions_bitwise(kind, inplace):
    model = randomize_batch_norms(MODEL_KINDS[kind]())
    model.layers[-1].trainable = False
    x = inputs_for(model)
    expected = predict(model, x)
    before = snapshot(model)

    patched = frozen_bn.patch_model(model, inplace=inplace)

    assert (patched is model) == inplace
    assert bn_types(patched) and set(bn_types(patched)) == {OURS}
    np.testing.assert_array_equal(predict(patched, x), expected)
    assert_weights_bitwise_equal(before[0], all_weights(patched))
    assert trainable_flags(patched) == before[2]
    if not inplace:
        assert_unchanged(model, before)

    restored = frozen_bn.unpatch_model(patched, inplace=inplace)

    assert set(bn_types(restored)) == {STOCK}
    np.testing.assert_array_equal(predict(restored, x), expected)
    assert_weights_bitwise_equal(before[0], all_weights(restored))
    assert trainable_flags(restored) == before[2]
    assert (
        "freeze_moving_stats"
        not in _walk.batch_norm_layers(restored)[0].get_config()
    )


def test_copy_is_independent_of_the_original():
    model = randomize_batch_norms(functional_net())
    patched = frozen_bn.patch_model(model)
    bn = patched.get_layer("a_bn")
    bn.moving_mean.assign(np.full(bn.moving_mean.shape, 7.0, "float32"))
    assert not np.any(to_numpy(model.get_layer("a_bn").moving_mean) == 7.0)
    assert type(model.get_layer("a_bn")) is STOCK


def test_patch_keeps_config_name_and_dtype_policy():
    keras.config.set_dtype_policy("mixed_float16")
    model = functional_net()
    keras.config.set_dtype_policy("float32")
    patched = frozen_bn.patch_model(model)
    for old, new in zip(
        _walk.batch_norm_layers(model),
        _walk.batch_norm_layers(patched),
        strict=True,
    ):
        config = new.get_config()
        assert config.pop("freeze_moving_stats") is False
        assert config == old.get_config()
        assert new.dtype_policy.name == "mixed_float16"


@pytest.mark.parametrize("inplace", [False, True])
def test_shared_layers_stay_shared(inplace):
    patched = frozen_bn.patch_model(shared_net(), inplace=inplace)
    bn_layers = _walk.batch_norm_layers(patched)
    assert len(bn_layers) == 1
    assert len(bn_layers[0]._inbound_nodes) == 2
    left, right = patched.get_layer("left"), patched.get_layer("right")
    assert (
        left._outbound_nodes[0].operation is right._outbound_nodes[0].operation
    )


def test_nested_layers_are_reached_at_every_depth():
    patched = frozen_bn.patch_model(nested_net())
    names = {layer.name for layer in _walk.batch_norm_layers(patched)}
    assert names == {"mid_bn", "inner_bn", "top_bn"}
    assert set(bn_types(patched)) == {OURS}


def test_patching_is_idempotent():
    model = randomize_batch_norms(nested_net())
    once = frozen_bn.patch_model(model, freeze_moving_stats=["mid_bn"])
    twice = frozen_bn.patch_model(once)
    assert layer_classes(twice) == layer_classes(once)
    assert_weights_bitwise_equal(all_weights(once), all_weights(twice))
    flags = [
        layer.freeze_moving_stats for layer in _walk.batch_norm_layers(twice)
    ]
    assert flags == [
        layer.freeze_moving_stats for layer in _walk.batch_norm_layers(once)
    ]
    assert sum(flags) == 1


def guide_model(base):
    """The transfer-learning guide's pattern: `base(x, training=False)`."""
    base.trainable = True
    inputs = keras.Input(base.inputs[0].shape[1:])
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1)(x))


def kernels(model):
    return [to_numpy(v) for v in model.trainable_weights if "kernel" in v.path]


def fit_briefly(model, seed=0):
    rng = np.random.default_rng(seed)
    shape = (16, *model.inputs[0].shape[1:])
    x = rng.uniform(0.0, 0.2, shape).astype("float32")
    y = rng.uniform(size=(16, 1)).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)


def test_guide_pattern_keeps_statistics_after_patching():
    # Not marked slow: the Keras 3.16 suites run it too.
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(32, 32, 3)
    )
    stock = guide_model(base)
    patched = frozen_bn.patch_model(stock)
    assert all(
        layer.freeze_moving_stats for layer in _walk.batch_norm_layers(patched)
    )

    stats, weights = moving_statistics(patched), kernels(patched)
    fit_briefly(patched)
    for new, old in zip(moving_statistics(patched), stats, strict=True):
        np.testing.assert_array_equal(new, old)
    assert any(
        not np.array_equal(new, old)
        for new, old in zip(kernels(patched), weights, strict=True)
    )

    # The same model unpatched: Keras <= 3.15 overrides the recorded
    # training=False, Keras 3.16 keeps it.
    stats = moving_statistics(stock)
    fit_briefly(stock)
    drifted = any(
        not np.array_equal(new, old)
        for new, old in zip(moving_statistics(stock), stats, strict=True)
    )
    assert drifted is not guide_pattern.HONOURS_TRAINING_FALSE


def test_patched_guide_pattern_trains_every_layer_after_the_base():
    patched = frozen_bn.patch_model(guide_pattern.guide_model())

    assert _training_arg.switched_off_by_leak(patched) == []
    assert 0.3 < guide_pattern.dropout_rate_in_training(patched) < 0.7
    assert guide_pattern.moved_under_fit(patched) == {
        "before_bn": True,
        "base_bn": False,
        "after_bn": True,
    }


def test_patching_keeps_a_training_false_it_cannot_take_over():
    model = guide_pattern.guide_model()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        patched = frozen_bn.patch_model(model, freeze_moving_stats=False)

    # The base's BN still trains, so its recorded training=False stays,
    # and where it leaks, patch_model names the layers it switches off.
    assert ModelReading(patched).called_in_inference_mode() == [
        patched.get_layer("base").get_layer("base_bn")
    ]
    leak_warnings = [
        w
        for w in caught
        if "runs a call recorded with `training=False`" in str(w)
    ]
    if guide_pattern.LEAKS_TRAINING_FALSE:
        (warning,) = leak_warnings
        assert str(warning.message).endswith(
            "inference mode: after_bn, after_dropout"
        )
        assert warning.filename == __file__
    else:
        assert leak_warnings == []


def test_fit_leaves_frozen_statistics_unchanged():
    model = randomize_batch_norms(nested_net())
    model.get_layer("middle").trainable = False
    patched = frozen_bn.patch_model(model)
    middle_stats = moving_statistics(patched.get_layer("middle"))
    fit_briefly(patched)
    for new, old in zip(
        moving_statistics(patched.get_layer("middle")),
        middle_stats,
        strict=True,
    ):
        np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize(
    "freeze, expected",
    [
        (True, {"a_bn": True, "b_bn": True}),
        (False, {"a_bn": False, "b_bn": False}),
        (["b_bn"], {"a_bn": False, "b_bn": True}),
        (lambda layer: layer.name == "a_bn", {"a_bn": True, "b_bn": False}),
        (None, {"a_bn": False, "b_bn": False}),
    ],
)
def test_freeze_moving_stats_choices(freeze, expected):
    patched = frozen_bn.patch_model(
        functional_net(), freeze_moving_stats=freeze
    )
    chosen = {
        layer.name: layer.freeze_moving_stats
        for layer in _walk.batch_norm_layers(patched)
    }
    assert chosen == expected


def test_auto_freezes_exactly_the_layers_called_with_training_false():
    inputs = keras.Input((8, 8, 3))
    base = keras.Model(inputs, conv_block(inputs, "base"), name="base")
    x = keras.Input((8, 8, 3))
    y = base(x, training=False)
    y = keras.layers.BatchNormalization(name="direct")(y, training=False)
    y = keras.layers.BatchNormalization(name="free")(y)
    patched = frozen_bn.patch_model(keras.Model(x, y))
    chosen = {
        layer.name: layer.freeze_moving_stats
        for layer in _walk.batch_norm_layers(patched)
    }
    assert chosen == {"base_bn": True, "direct": True, "free": False}


@pytest.mark.parametrize("kind", ["keras", "h5"])
def test_saved_files_patch_and_round_trip(tmp_path, kind):
    model = randomize_batch_norms(nested_net())
    x = inputs_for(model)
    source = tmp_path / f"stock.{kind}"
    model.save(source)
    loaded = keras.models.load_model(source)
    patched = frozen_bn.patch_model(loaded, freeze_moving_stats=True)
    target = tmp_path / f"patched.{kind}"
    patched.save(target)

    reloaded = keras.models.load_model(target)

    assert set(bn_types(reloaded)) == {OURS}
    assert all(
        layer.freeze_moving_stats for layer in _walk.batch_norm_layers(reloaded)
    )
    assert_weights_bitwise_equal(all_weights(model), all_weights(reloaded))
    np.testing.assert_array_equal(predict(reloaded, x), predict(model, x))
    np.testing.assert_array_equal(
        predict(reloaded, x, training=True), predict(model, x)
    )


APPLICATIONS = {
    "ResNet50": (keras.applications.ResNet50, 32),
    "MobileNetV2": (keras.applications.MobileNetV2, 32),
    "EfficientNetB0": (keras.applications.EfficientNetB0, 32),
    "DenseNet121": (keras.applications.DenseNet121, 32),
    "InceptionV3": (keras.applications.InceptionV3, 75),
    "Xception": (keras.applications.Xception, 71),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications(name):
    constructor, size = APPLICATIONS[name]
    model = randomize_batch_norms(
        constructor(
            weights=None, include_top=False, input_shape=(size, size, 3)
        )
    )
    x = inputs_for(model, batch=2)
    expected = predict(model, x)
    before = snapshot(model)

    patched = frozen_bn.patch_model(model)

    assert_unchanged(model, before)
    assert len(bn_types(patched)) == len(bn_types(model)) > 0
    assert set(bn_types(patched)) == {OURS}
    np.testing.assert_array_equal(predict(patched, x), expected)
    patched.trainable = False
    for layer in _walk.iter_layers(patched):
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0  # so training mode differs only in BN
    np.testing.assert_array_equal(predict(patched, x, training=True), expected)
    restored = frozen_bn.unpatch_model(patched, inplace=True)
    np.testing.assert_array_equal(predict(restored, x), expected)


def test_model_without_batch_norm_warns_and_comes_back_equivalent():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    x = np.ones((2, 3), "float32")
    with pytest.warns(UserWarning, match="has no BatchNormalization layer"):
        patched = frozen_bn.patch_model(model)
    np.testing.assert_array_equal(predict(patched, x), predict(model, x))


def test_foreign_subclass_is_left_alone_with_a_warning():
    class CustomBN(keras.layers.BatchNormalization):
        pass

    inputs = keras.Input((4,))
    outputs = CustomBN(name="custom")(keras.layers.BatchNormalization()(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.warns(UserWarning, match=r"custom \(CustomBN\)"):
        patched = frozen_bn.patch_model(model, inplace=True)
    assert type(patched.get_layer("custom")) is CustomBN
    assert type(patched.layers[1]) is OURS


def test_uncompiled_model_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frozen_bn.patch_model(functional_net())


@pytest.mark.parametrize(
    "value", [None, "model.keras", np.zeros(3), keras.layers.Dense(2)]
)
@pytest.mark.parametrize(
    "function", [frozen_bn.patch_model, frozen_bn.unpatch_model]
)
def test_non_models_raise_type_error(function, value):
    with pytest.raises(TypeError, match="Expected `model` to be a keras.Model"):
        function(value)


def test_unbuilt_model_raises_value_error():
    model = keras.Sequential([keras.layers.BatchNormalization()])
    with pytest.raises(
        ValueError,
        match=r"Expected `model` to be built.*model\.build\(input_shape\)",
    ):
        frozen_bn.patch_model(model)


def test_unknown_layer_names_raise_value_error():
    with pytest.raises(
        ValueError,
        match=r"Expected `freeze_moving_stats` to hold BatchNormalization "
        r"layers.*'nope' is not one",
    ):
        frozen_bn.patch_model(
            functional_net(), freeze_moving_stats=["a_bn", "nope"]
        )


@pytest.mark.parametrize("value", [1, "all", {"a_bn": True}])
def test_invalid_freeze_moving_stats_raises_type_error(value):
    with pytest.raises(TypeError, match="Received: freeze_moving_stats="):
        frozen_bn.patch_model(functional_net(), freeze_moving_stats=value)


def test_callable_must_return_a_bool():
    with pytest.raises(TypeError, match="callable to return a bool"):
        frozen_bn.patch_model(
            functional_net(), freeze_moving_stats=lambda layer: 1
        )


# Models that build their layers in code: keras-hub, custom blocks.


def hub_inputs(batch=2):
    shape = (batch, *keras_hub_models.IMAGE_SHAPE)
    return np.random.default_rng(0).normal(0.5, 0.5, shape).astype("float32")


def assert_round_trip_keeps_class(model, patched, unpatched, x):
    """Patched: `model`'s class, frozen_bn layers; unpatched: its very class,
    stock layers; both predict bitwise like `model`."""
    assert isinstance(patched, type(model))
    assert type(patched).__name__ == type(model).__name__
    assert set(bn_types(patched)) == {OURS}
    assert len(bn_types(patched)) == len(bn_types(model))
    np.testing.assert_array_equal(predict(patched, x), predict(model, x))
    assert type(unpatched) is type(model)
    assert set(bn_types(unpatched)) == {STOCK}
    np.testing.assert_array_equal(predict(unpatched, x), predict(model, x))


@keras_hub_models.requires_keras_hub
@pytest.mark.parametrize("name", sorted(keras_hub_models.BACKBONES))
def test_keras_hub_backbones_keep_their_class(name):
    model = keras_hub_models.shared_backbone(name)
    x = hub_inputs()
    before = snapshot(model)

    patched = frozen_bn.patch_model(model)
    unpatched = frozen_bn.unpatch_model(patched)

    assert_unchanged(model, before)
    assert_round_trip_keeps_class(model, patched, unpatched, x)


@keras_hub_models.requires_keras_hub
def test_keras_hub_task_patches_and_unpatches():
    task = keras_hub_models.image_classifier("resnet_v2")
    x = hub_inputs()
    patched = frozen_bn.patch_model(task)  # Compiled, never fitted.
    unpatched = frozen_bn.unpatch_model(patched)

    assert_round_trip_keeps_class(task, patched, unpatched, x)
    assert isinstance(patched.backbone, type(task.backbone))


@keras_hub_models.requires_keras_hub
def test_patched_backbone_serves_as_a_task_backbone():
    backbone = frozen_bn.patch_model(
        keras_hub_models.shared_backbone("resnet_v1")
    )
    task = keras_hub_models.keras_hub.models.ImageClassifier(
        backbone=backbone, num_classes=2
    )

    assert task.backbone is backbone
    assert set(bn_types(task)) == {OURS}
    assert sorted(backbone.pyramid_outputs) == ["P2", "P3"]
    assert predict(task, hub_inputs()).shape == (2, 2)


def custom_block_net():
    inputs = keras.Input((8, 8, 3))
    x = ConvBlock(4, name="block")(inputs)
    x = keras.layers.BatchNormalization(name="graph_bn")(x)
    return randomize_batch_norms(keras.Model(inputs, x, name="custom_block"))


def saved_and_loaded(model, path):
    model.save(path)
    return keras.saving.load_model(path)


def bn_flags(model):
    return [
        (type(layer), layer.trainable, layer.freeze_moving_stats)
        for layer in _walk.batch_norm_layers(model)
    ]


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param("keras_hub", marks=keras_hub_models.requires_keras_hub),
        "custom_block",
    ],
)
def test_patch_survives_saving_where_layers_are_built_in_code(
    tmp_path, kind, inplace
):
    if kind == "keras_hub":
        model = randomize_batch_norms(keras_hub_models.backbone("mobilenet_v3"))
    else:
        model = custom_block_net()
    x = inputs_for(model)
    expected = predict(model, x)
    patched = frozen_bn.patch_model(
        model, freeze_moving_stats=True, inplace=inplace
    )
    first = _walk.batch_norm_layers(patched)[0]
    first.trainable, first.freeze_moving_stats = False, False

    loaded = saved_and_loaded(patched, tmp_path / "patched.keras")

    assert type(loaded).__name__ == type(model).__name__
    assert bn_flags(loaded) == bn_flags(patched)
    assert set(bn_types(loaded)) == {OURS}
    np.testing.assert_array_equal(predict(loaded, x), expected)
    restored = saved_and_loaded(
        frozen_bn.unpatch_model(loaded), tmp_path / "unpatched.keras"
    )
    assert set(bn_types(restored)) == {STOCK}
    np.testing.assert_array_equal(predict(restored, x), expected)


@keras_hub_models.requires_keras_hub
def test_patched_file_loads_in_a_new_process(tmp_path):
    path = tmp_path / "patched.keras"
    frozen_bn.patch_model(
        keras_hub_models.image_classifier("mobilenet_v3"),
        freeze_moving_stats=True,
    ).save(path)
    script = (
        "import keras, frozen_bn\n"
        "from frozen_bn import _walk\n"
        f"model = keras.saving.load_model({str(path)!r})\n"
        "layers = _walk.batch_norm_layers(model)\n"
        "print(type(model).__name__, len(layers), sum(\n"
        "    isinstance(x, frozen_bn.BatchNormalization)\n"
        "    and x.freeze_moving_stats for x in layers))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )

    assert result.stdout.split() == ["ImageClassifier", "13", "13"]


def test_model_whose_config_does_not_rebuild_it_raises_value_error():
    @keras.saving.register_keras_serializable(package="frozen_bn_tests")
    class ForgetfulNet(keras.Model):
        def __init__(self, filters=4, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.conv = keras.layers.Conv2D(filters, 1)
            self.bn = keras.layers.BatchNormalization()

        def call(self, inputs):
            return self.bn(self.conv(inputs))

    model = ForgetfulNet(filters=3)  # get_config() forgets `filters`
    model(np.zeros((1, 4, 4, 2), "float32"))

    with pytest.raises(ValueError, match="inplace=True"):
        frozen_bn.patch_model(model)


def test_patch_drops_a_recorded_none_that_fit_runs_in_inference_mode():
    patched = frozen_bn.patch_model(guide_pattern.guide_model(recorded=None))

    [base_call] = [
        call
        for call in ModelReading(patched).calls
        if call.layer.name == "base"
    ]
    expected = (
        _walk.NOT_RECORDED if guide_pattern.HONOURS_TRAINING_NONE else None
    )
    assert base_call.training is expected
    assert _training_arg.switched_off_by_leak(patched) == []
    moved = guide_pattern.moved_under_fit(patched)
    assert moved == {"before_bn": True, "base_bn": True, "after_bn": True}


def test_patch_warns_about_the_bn_a_plain_call_trains():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frozen_bn.patch_model(guide_pattern.augmented_conv_net())

    named = [w for w in caught if "bn (after flip)" in str(w.message)]
    assert len(named) == int(guide_pattern.SPREADS_TRAINING_DEFAULT)
