"""Tests for `frozen_bn.freeze`, `unfreeze` and `freeze_summary`."""

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _walk
from frozen_bn.architecture import stages
from tests import keras_hub_models
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    moving_statistics,
    randomize_batch_norms,
)

POLICIES = ("train", "freeze_statistics", "freeze")


def block(x, name, filters):
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def base_model():
    """Two Conv-BN-ReLU blocks with pooling between them: two stages."""
    inputs = keras.Input((8, 8, 3))
    x = block(inputs, "b1", 4)
    x = keras.layers.MaxPooling2D(name="b1_pool")(x)
    return keras.Model(inputs, block(x, "b2", 4), name="base")


def nested_model():
    """A classifier calling `base_model()`, with its own BN layer."""
    inputs = keras.Input((8, 8, 3))
    x = base_model()(inputs)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, name="top")(x)
    return randomize_batch_norms(keras.Model(inputs, outputs, name="net"))


def sequential_model():
    return randomize_batch_norms(
        keras.Sequential(
            [
                keras.Input((8, 8, 3)),
                keras.layers.Conv2D(4, 3, name="conv"),
                keras.layers.BatchNormalization(name="bn"),
                keras.layers.GlobalAveragePooling2D(name="pool"),
                keras.layers.Dense(1, name="top"),
            ],
            name="seq",
        )
    )


def flags(model):
    """`(class, trainable, freeze_moving_stats)` of `model` and its layers."""
    return [
        (
            type(layer).__name__,
            layer.trainable,
            getattr(layer, "freeze_moving_stats", None),
        )
        for layer in (model, *_walk.iter_layers(model))
    ]


def frozen_names(model):
    return [
        layer.name for layer in _walk.iter_layers(model) if not layer.trainable
    ]


def fit(model):
    x = images(16, size=model.input_shape[1])
    y = np.random.default_rng(1).normal(size=(16, *model.output_shape[1:]))
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, y.astype("float32"), batch_size=8, epochs=1, verbose=0)


def weights_by_layer(model):
    """`{layer path: {variable name: array}}`: each variable of `model` under
    the innermost layer holding it."""
    owners = {}
    for layer, parents in _walk.iter_layers_with_parents(model):
        for variable in layer.weights:  # Children come after their parents.
            owners[id(variable)] = (_walk.layer_path(layer, parents), variable)
    found = {}
    for path, variable in owners.values():
        name = variable.path.rsplit("/", 1)[-1]
        found.setdefault(path, {})[name] = keras.ops.convert_to_numpy(variable)
    return found


def assert_trained_as_frozen(before, after, frozen, policy):
    """Frozen layers' weights unchanged; the policy's part trained."""
    fixed = {"moving_mean", "moving_variance"}
    if policy == "train":
        fixed = set()
    elif policy == "freeze":
        fixed |= {"gamma", "beta"}
    for path, weights in before.items():
        is_bn = "moving_mean" in weights
        for name, value in weights.items():
            unchanged = np.array_equal(value, after[path][name])
            if path.rsplit("/", 1)[-1] in frozen or (is_bn and name in fixed):
                assert unchanged, f"{path}/{name} changed"
            else:
                assert not unchanged, f"{path}/{name} did not train"


@pytest.mark.parametrize("policy", POLICIES)
def test_fit_trains_only_what_the_policy_leaves_trainable(policy):
    model = frozen_bn.freeze(nested_model(), up_to="b1_pool", batch_norm=policy)
    before = weights_by_layer(model)
    fit(model)
    after = weights_by_layer(model)
    assert_trained_as_frozen(before, after, {"b1_conv", "b1_bn"}, policy)


def test_original_is_untouched():
    model = nested_model()
    weights, classes = all_weights(model), flags(model)

    frozen = frozen_bn.freeze(model, up_to="b1_pool")
    fit(frozen)

    assert frozen is not model
    assert_weights_bitwise_equal(weights, all_weights(model))
    assert flags(model) == classes
    assert not hasattr(model, "_frozen_bn_flags_before_freeze")


def test_inplace_freezes_the_model_itself():
    model = nested_model()
    assert frozen_bn.freeze(model, up_to=1, inplace=True) is model
    assert not model.get_layer("base").trainable


def test_a_nested_model_spanning_the_boundary_stays_trainable():
    model = frozen_bn.freeze(nested_model(), up_to="b1_relu")
    base = model.get_layer("base")
    assert model.trainable and base.trainable
    assert frozen_names(base)[1:] == ["b1_conv", "b1_bn", "b1_relu"]
    assert [layer.name for layer in model.layers if not layer.trainable] == [
        model.layers[0].name
    ]


def test_up_to_a_nested_model_freezes_all_of_it():
    model = frozen_bn.freeze(nested_model(), up_to="base")
    assert not model.get_layer("base").trainable
    assert frozen_names(model)[-1] == "b2_relu"
    assert model.get_layer("head_bn").trainable


def test_name_index_negative_index_and_callable_agree():
    model = nested_model()
    by_name = flags(frozen_bn.freeze(model, up_to="base"))
    assert flags(frozen_bn.freeze(model, up_to=1)) == by_name
    assert flags(frozen_bn.freeze(model, up_to=-4)) == by_name
    chosen = {layer.name for layer in model.layers[:2]}
    by_rule = frozen_bn.freeze(model, up_to=lambda layer: layer.name in chosen)
    assert flags(by_rule) == by_name


@pytest.mark.parametrize("policy", POLICIES)
def test_batch_norm_policy_flags(policy):
    model = frozen_bn.freeze(nested_model(), up_to="base", batch_norm=policy)
    bn = model.get_layer("head_bn")
    assert (bn.trainable, bn.freeze_moving_stats) == {
        "train": (True, False),
        "freeze_statistics": (True, True),
        "freeze": (False, False),
    }[policy]
    assert not any(
        layer.trainable for layer in _walk.batch_norm_layers(model)[:2]
    )


def test_freeze_is_idempotent():
    model = nested_model()
    once = frozen_bn.freeze(model, up_to="b1_pool")
    twice = frozen_bn.freeze(once, up_to="b1_pool")
    assert flags(twice) == flags(once)
    assert frozen_bn.freeze(once, up_to="b1_pool", inplace=True) is once
    assert flags(once) == flags(twice)
    assert flags(frozen_bn.unfreeze(twice)) == flags(
        frozen_bn.patch_model(model)
    )


def test_unfreeze_gives_back_the_flags_before_freeze():
    model = frozen_bn.patch_model(nested_model())
    model.get_layer("base").get_layer("b2_bn").freeze_moving_stats = True
    model.get_layer("top").trainable = False
    model.get_layer("base").get_layer("b1_conv").trainable = False
    before = flags(model)

    for policy in POLICIES:
        frozen = frozen_bn.freeze(model, up_to="b2_conv", batch_norm=policy)
        assert flags(frozen) != before
        assert flags(frozen_bn.unfreeze(frozen)) == before
        assert flags(frozen_bn.unfreeze(frozen, inplace=True)) == before
        with pytest.raises(ValueError, match="`freeze` did not produce"):
            frozen_bn.unfreeze(frozen)


def test_unfreeze_keeps_the_layers_patched():
    model = nested_model()
    unfrozen = frozen_bn.unfreeze(frozen_bn.freeze(model, stages=1))
    assert flags(unfrozen) == flags(frozen_bn.patch_model(model))
    assert all(
        isinstance(layer, frozen_bn.BatchNormalization)
        for layer in _walk.batch_norm_layers(unfrozen)
    )


def test_stages_freezes_exactly_the_first_stages():
    model = randomize_batch_norms(base_model())
    found = stages(model)
    assert len(found) >= 2
    for count in range(len(found) + 1):
        frozen = frozen_bn.freeze(model, stages=count)
        expected = [name for stage in found[:count] for name in stage.layers]
        assert frozen_names(frozen) == expected
        if count:
            by_stage = frozen_bn.freeze(model, up_to=found[count - 1])
            assert flags(by_stage) == flags(frozen)


def test_sequential_model():
    model = sequential_model()
    frozen = frozen_bn.freeze(model, up_to="bn", batch_norm="train")
    assert frozen_names(frozen)[1:] == ["conv", "bn"]
    before = weights_by_layer(frozen)
    fit(frozen)
    assert_trained_as_frozen(
        before, weights_by_layer(frozen), {"conv", "bn"}, "train"
    )


def test_summary_rows():
    model = frozen_bn.freeze(randomize_batch_norms(base_model()), stages=1)
    summary = frozen_bn.freeze_summary(model)
    first, *rest = summary.rows
    assert first.trainable_parameters == 0
    assert first.frozen_parameters == sum(
        w.size for w in model.get_layer("b1_conv").get_weights()
    ) + sum(w.size for w in model.get_layer("b1_bn").get_weights())
    assert first.batch_norm == "1 frozen"
    assert [row.batch_norm for row in rest] == ["1 frozen"]
    assert rest[0].frozen_parameters == 8  # b2_bn's statistics.
    text = summary.to_text()
    assert text.splitlines()[0].split() == [
        "stage",
        "layers",
        "trainable",
        "frozen",
        "BN",
        "under",
        "fit()",
    ]
    assert len(text.splitlines()) == 2 + len(summary.rows)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({}, ValueError, "exactly one of `up_to` and `stages`"),
        ({"up_to": 1, "stages": 1}, ValueError, "exactly one of"),
        ({"up_to": "b1_bm"}, ValueError, r"has 13 layers .*'b1_bn'.*b1_bm"),
        ({"up_to": "nothing"}, ValueError, r"name of a layer .*nothing'$"),
        ({"up_to": 5}, ValueError, r"from -5 to 4 .*Received: up_to=5"),
        ({"up_to": -6}, ValueError, r"from -5 to 4"),
        ({"stages": 99}, ValueError, r"from 0 \(nothing frozen\) to \d+ \(1:"),
        ({"stages": -1}, ValueError, r"Received: stages=-1"),
        ({"stages": "1"}, TypeError, r"`stages` to be an int"),
        ({"stages": True}, TypeError, r"`stages` to be an int"),
        ({"up_to": True}, TypeError, r"Received: up_to=True of type bool"),
        ({"up_to": 1.0}, TypeError, r"layer name, an index"),
        ({"up_to": lambda layer: 1}, TypeError, r"callable to return a bool"),
        (
            {"up_to": 1, "batch_norm": "eval"},
            ValueError,
            r"'train', 'freeze_statistics', 'freeze'.*batch_norm='eval'",
        ),
    ],
)
def test_bad_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        frozen_bn.freeze(nested_model(), **arguments)


def test_a_stage_of_another_model_is_rejected():
    stage = stages(randomize_batch_norms(base_model()))[0]
    with pytest.raises(ValueError, match=r"one of `frozen_bn.stages\(model\)"):
        frozen_bn.freeze(nested_model(), up_to=stage)


def test_not_a_model():
    with pytest.raises(TypeError, match="Expected `model`"):
        frozen_bn.freeze("model", up_to=1)
    with pytest.raises(TypeError, match="Expected `model`"):
        frozen_bn.unfreeze("model")


def test_demo_stage2_freeze_gives_the_hand_written_flags():
    from frozen_bn.demo import models
    from frozen_bn.demo.protocol import FINE_TUNED_BLOCK, SETTINGS

    weights = models.build_base(keras, 0.9).get_weights()
    for setting in SETTINGS:
        if setting.graph_mode:
            continue

        def patched_model(setting=setting):
            base = models.load_pretrained_base(keras, weights, 0.9)
            base.trainable = False
            model = models.with_head(
                keras, base, 1, "sigmoid", training=setting.base_training
            )
            return frozen_bn.patch_model(model)

        by_hand = patched_model()
        base = by_hand.get_layer("base")
        base.trainable = True
        for layer in base.layers:
            layer.trainable = layer.name.startswith(FINE_TUNED_BLOCK)
        with_freeze = patched_model()
        frozen_bn.freeze(
            with_freeze.get_layer("base"),
            up_to=models.last_frozen_index(base),
            batch_norm=models.stage2_batch_norm(setting),
            inplace=True,
        )
        assert flags(with_freeze) == flags(by_hand), setting.name


@keras_hub_models.requires_keras_hub
def test_keras_hub_backbone():
    backbone = keras_hub_models.shared_backbone("resnet_v1")
    weights = all_weights(backbone)
    model = frozen_bn.freeze(backbone, stages=2)
    found = stages(model)
    frozen = {name for stage in found[:2] for name in stage.layers}
    assert {layer.name for layer in model.layers if not layer.trainable} == (
        frozen
    )
    before = weights_by_layer(model)
    fit(model)
    after = weights_by_layer(model)
    for path, values in before.items():
        if path.split("/", 1)[0] in frozen:
            for name, value in values.items():
                np.testing.assert_array_equal(after[path][name], value)
    assert_weights_bitwise_equal(weights, all_weights(backbone))


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_resnet50(policy):
    model = randomize_batch_norms(
        keras.applications.ResNet50(
            weights=None,
            input_shape=(32, 32, 3),
            classes=1,
            classifier_activation=None,
        )
    )
    frozen = frozen_bn.freeze(model, stages=3, batch_norm=policy)
    names = {n for s in stages(model)[:3] for n in s.layers}
    before = weights_by_layer(frozen)
    statistics = moving_statistics(frozen)
    fit(frozen)
    after = weights_by_layer(frozen)
    assert_trained_as_frozen(before, after, names, policy)
    changed = [
        not np.array_equal(old[0], new[0])
        for old, new in zip(statistics, moving_statistics(frozen), strict=True)
    ]
    assert any(changed) == (policy == "train")


@pytest.mark.slow
def test_mobilenet_v2_up_to_a_stage():
    model = keras.applications.MobileNetV2(
        weights=None,
        input_shape=(32, 32, 3),
        classes=1,
        classifier_activation=None,
    )
    stage = stages(model)[4]
    frozen = frozen_bn.freeze(model, up_to=stage)
    assert frozen_names(frozen)[-1] == stage.last
    before = weights_by_layer(frozen)
    statistics = moving_statistics(frozen)
    fit(frozen)
    after = weights_by_layer(frozen)
    # Some trainable weights of a random MobileNetV2 get no gradient in one
    # short fit (block_10_expand's kernel did not change): only the frozen
    # part and the statistics must be unchanged, and the classifier train.
    for path in frozen_names(frozen):
        for name, value in before.get(path, {}).items():
            np.testing.assert_array_equal(after[path][name], value)
    for old, new in zip(statistics, moving_statistics(frozen), strict=True):
        np.testing.assert_array_equal(new[0], old[0])
        np.testing.assert_array_equal(new[1], old[1])
    assert not np.array_equal(
        after["predictions"]["kernel"], before["predictions"]["kernel"]
    )
