"""Tests for `split_model`, `cut_points` and `join` (Keras 3, every backend)."""

import keras
import numpy as np
import pytest

import frozen_bn
from tests import keras_hub_models
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    subclassed_model,
    to_numpy,
)

APPLICATIONS = {
    "ResNet50": keras.applications.ResNet50,
    "MobileNetV2": keras.applications.MobileNetV2,
    "DenseNet121": keras.applications.DenseNet121,
}

# (application, cut, number of tensors crossing the cut). Cuts inside a
# residual or dense block are crossed by the block's shortcut.
CUTS = [
    ("ResNet50", "conv4_block6_out", 1),  # end of a stage
    ("ResNet50", 139, 2),  # "from conv k+1": conv4_block6_3_conv, in a block
    ("ResNet50", "conv2_block1_1_relu", 2),  # in a block with a projection
    ("MobileNetV2", "block_5_add", 1),
    ("MobileNetV2", "block_5_expand_relu", 2),  # inside an inverted residual
    ("DenseNet121", "pool3_pool", 1),  # a transition layer
    ("DenseNet121", "conv3_block2_1_relu", 2),  # inside a dense block
]


# (keras-hub backbone, cut, number of tensors crossing the cut). "ops.pad"
# and "ops.split" stand for a `keras.ops` call (see `cut_name`).
HUB_CUTS = [
    ("resnet_v1", "stack0_block0_out", 1),  # end of a stage
    ("resnet_v1", "stack1_block0_1_relu", 2),  # in a block with a projection
    ("resnet_v2", "conv1_conv", 1),  # right before `ops.pad`
    ("resnet_v2", "ops.pad", 1),  # right after it
    ("resnet_v2", "stack0_block0_1_bn", 2),  # in a pre-activation block
    ("resnet_vd", "stack1_block0_1_bn", 2),  # across the pooled shortcut
    ("mobilenet_v3", "block_1_0", 1),
    ("efficientnet", "block1a_se_reduce", 3),  # in squeeze-and-excite
    ("efficientnet", "block2a_project_bn", 1),
    ("cspnet", "stage_0_csp_activation_2", 1),  # right before `ops.split`
    ("cspnet", "ops.split", 2),  # right after it: its two halves
    ("cspnet", "stage_0_block_0_bottleneck_block_bn_1", 3),
    ("cspnet", "stage_0_csp_conv_concat", 1),
    ("densenet", "transition1_pool", 1),
    ("densenet", "stack2_block1_1_relu", 2),  # inside a dense block
    ("xception", "block1_pool", 1),
]
# One cut of `HUB_CUTS` per backbone, for the slower `join` test.
HUB_JOINS = [
    ("resnet_v1", "stack1_block0_1_relu"),
    ("resnet_v2", "ops.pad"),
    ("resnet_vd", "stack1_block0_1_bn"),
    ("mobilenet_v3", "block_1_0"),
    ("efficientnet", "block1a_se_reduce"),
    ("cspnet", "ops.split"),
    ("densenet", "transition1_pool"),
    ("xception", "block1_pool"),
]


@pytest.fixture(scope="module")
def applications():
    """Each architecture once per module, at a small input size."""
    return {}


def application(cache, name):
    if name not in cache:
        cache[name] = APPLICATIONS[name](
            weights=None, input_shape=(32, 32, 3), classes=10
        )
    return cache[name]


def infer(model, x):
    return to_numpy(model(x, training=False))


def conv_bn_sequential():
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ],
        name="small",
    )


@pytest.mark.slow
@pytest.mark.parametrize("app, at, crossing", CUTS)
def test_head_of_base_equals_model(applications, app, at, crossing):
    model = application(applications, app)
    x = images(2, size=32)
    base, head = frozen_bn.split_model(model, at)

    features = base(x, training=False)

    assert len(keras.tree.flatten(features)) == crossing
    np.testing.assert_array_equal(
        to_numpy(head(features, training=False)), infer(model, x)
    )


@pytest.mark.slow
@pytest.mark.parametrize("app, at, crossing", CUTS[::2])
def test_join_predicts_like_model(applications, app, at, crossing):
    model = application(applications, app)
    x = images(2, size=32)

    joined = frozen_bn.join(*frozen_bn.split_model(model, at))

    np.testing.assert_array_equal(infer(joined, x), infer(model, x))


@pytest.mark.slow
def test_split_does_not_change_model(applications):
    model = application(applications, "ResNet50")
    before = all_weights(model)
    layers = [(type(la), la.name, la.trainable) for la in model.layers]
    x = images(2, size=32)
    expected = infer(model, x)

    frozen_bn.split_model(model, 139)

    assert_weights_bitwise_equal(before, all_weights(model))
    assert [(type(la), la.name, la.trainable) for la in model.layers] == layers
    np.testing.assert_array_equal(infer(model, x), expected)


@pytest.mark.slow
def test_cut_points_are_the_single_tensor_cuts(applications):
    model = application(applications, "ResNet50")

    points = frozen_bn.cut_points(model)

    assert "conv4_block6_out" in points
    assert "conv4_block6_3_conv" not in points
    assert points[-1] == "avg_pool"
    for at in ("conv5_block1_out", "conv3_block2_add"):
        base, _ = frozen_bn.split_model(model, at)
        assert len(base.outputs) == 1


@pytest.mark.slow
def test_cut_inside_residual_block_hands_over_shortcut(applications):
    model = application(applications, "ResNet50")

    base, head = frozen_bn.split_model(model, "conv4_block6_3_conv")

    shortcut = model.get_layer("conv4_block5_out").output
    branch = model.get_layer("conv4_block6_3_conv").output
    assert [t.shape for t in base.outputs] == [shortcut.shape, branch.shape]
    assert [t.shape for t in head.inputs] == [shortcut.shape, branch.shape]


def ops_model():
    """A Functional model whose graph calls `keras.ops.pad` and `split`."""
    inputs = keras.Input((6, 6, 3), name="images")
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    x = keras.layers.BatchNormalization(name="bn")(x)
    left, right = keras.ops.split(x, 2, axis=-1)
    left = keras.layers.Dense(2, name="left")(left)
    x = keras.layers.Concatenate(name="concat")([left, right])
    outputs = keras.layers.Dense(3, name="dense")(x)
    return keras.Model(inputs, outputs, name="ops_model")


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
@pytest.mark.parametrize("name", keras_hub_models.BACKBONES)
def test_keras_hub_cut_points_are_the_single_tensor_cuts(name):
    model = keras_hub_models.shared_backbone(name)

    points = frozen_bn.cut_points(model)

    assert len(points) >= 5
    for at in points:
        base, _ = frozen_bn.split_model(model, at)
        assert len(base.outputs) == 1, at


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
@pytest.mark.parametrize("name, at, crossing", HUB_CUTS)
def test_keras_hub_head_of_base_equals_model(name, at, crossing):
    model = keras_hub_models.shared_backbone(name)
    x = images(2, size=32)
    base, head = frozen_bn.split_model(
        model, keras_hub_models.cut_name(model, at)
    )

    features = base(x, training=False)

    assert len(keras.tree.flatten(features)) == crossing
    np.testing.assert_array_equal(
        to_numpy(head(features, training=False)), infer(model, x)
    )


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
@pytest.mark.parametrize("name, at", HUB_JOINS)
def test_keras_hub_join_predicts_like_model(name, at):
    model = keras_hub_models.shared_backbone(name)
    x = images(4, size=32)

    joined = frozen_bn.join(
        *frozen_bn.split_model(model, keras_hub_models.cut_name(model, at))
    )

    np.testing.assert_array_equal(infer(joined, x), infer(model, x))
    np.testing.assert_array_equal(
        joined.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet_v2", "cspnet"])
def test_keras_ops_calls_are_cut_points_not_key_errors(name):
    # A `keras.ops` call is a node of the graph but not in `model.layers`:
    # looking it up there raised a bare KeyError.
    model = keras_hub_models.shared_backbone(name)
    first = keras_hub_models.ops_calls(model)[0]
    position = model.operations.index(first)
    before = model.operations[position - 1].name

    points = frozen_bn.cut_points(model)
    base, _ = frozen_bn.split_model(model, first.name)

    assert before in points
    assert (first.name in points) == (len(base.outputs) == 1)


@pytest.mark.parametrize(
    "at, crossing",
    [("conv", 1), ("ops.pad", 1), ("bn", 1), ("ops.split", 2), ("left", 2)],
)
def test_keras_ops_call_is_cut_like_a_layer(at, crossing):
    model = ops_model()
    pad = keras_hub_models.cut_name(model, "ops.pad")
    x = images(2, size=6)

    base, head = frozen_bn.split_model(
        model, keras_hub_models.cut_name(model, at)
    )

    assert len(base.outputs) == crossing
    features = base(x, training=False)  # a list: keep its tensors apart
    np.testing.assert_array_equal(infer(head, features), infer(model, x))
    assert frozen_bn.cut_points(model) == ["conv", pad, "bn", "concat"]


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_keras_hub_classifier_splits_after_its_backbone():
    classifier = keras_hub_models.image_classifier("resnet_v2")
    backbone = classifier.backbone
    x = images(2, size=32)

    base, head = frozen_bn.split_model(classifier, backbone.name)

    assert base.layers[-1] is backbone
    assert backbone.name in frozen_bn.cut_points(classifier)
    np.testing.assert_array_equal(
        infer(head, infer(base, x)), infer(classifier, x)
    )
    joined = frozen_bn.join(backbone, head)
    np.testing.assert_array_equal(infer(joined, x), infer(classifier, x))


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_keras_hub_split_does_not_change_backbone():
    model = keras_hub_models.shared_backbone("cspnet")
    before = all_weights(model)
    config = model.get_config()
    x = images(2, size=32)
    expected = infer(model, x)

    frozen_bn.split_model(model, keras_hub_models.cut_name(model, "ops.split"))

    assert model.get_config() == config
    assert_weights_bitwise_equal(before, all_weights(model))
    np.testing.assert_array_equal(infer(model, x), expected)


def test_index_and_name_give_the_same_split():
    model = conv_bn_sequential()

    by_index = frozen_bn.split_model(model, 2)
    by_negative_index = frozen_bn.split_model(model, -3)
    by_name = frozen_bn.split_model(model, model.layers[2].name)

    for base, head in (by_index, by_negative_index, by_name):
        assert [la.name for la in base.layers[1:]] == [
            la.name for la in model.layers[:3]
        ]
        assert [la.name for la in head.layers[1:]] == [
            la.name for la in model.layers[3:]
        ]


@pytest.mark.parametrize("at", [0, 1, 2, 3])
def test_sequential_splits_at_every_layer(at):
    model = conv_bn_sequential()
    x = images(2, size=8)

    base, head = frozen_bn.split_model(model, at)

    np.testing.assert_array_equal(infer(head, infer(base, x)), infer(model, x))
    assert frozen_bn.cut_points(model) == [la.name for la in model.layers[:-1]]


def test_split_after_nested_backbone():
    backbone = conv_bn_sequential()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(backbone(inputs, training=False))
    model = keras.Model(inputs, outputs)
    x = images(2, size=8)

    base, head = frozen_bn.split_model(model, backbone.name)

    assert base.layers[-1] is backbone
    np.testing.assert_array_equal(infer(head, infer(base, x)), infer(model, x))


def test_base_hands_over_inputs_the_head_reads():
    first = keras.Input((4,), name="first")
    second = keras.Input((2,), name="second")
    x = keras.layers.Dense(3, name="hidden")(first)
    x = keras.layers.Concatenate(name="join")([x, second])
    model = keras.Model([first, second], keras.layers.Dense(1)(x))
    x = [images(3, size=32)[:, 0, :4, 0], images(3, size=32)[:, 0, :2, 0]]

    base, head = frozen_bn.split_model(model, "hidden")

    assert [t.shape for t in base.outputs] == [(None, 2), (None, 3)]
    np.testing.assert_array_equal(infer(head, base(x)), infer(model, x))
    assert frozen_bn.cut_points(model) == ["join"]


def test_weights_are_shared_with_model():
    model = conv_bn_sequential()
    x = images(8, size=8)
    before = infer(model, x)
    base, head = frozen_bn.split_model(model, 2)
    base.trainable = False
    head.compile(keras.optimizers.SGD(0.1), "mse")

    head.fit(infer(base, x), np.ones((8, 3)), epochs=1, verbose=0)

    assert head.layers[-1] is model.layers[-1]
    after = infer(model, x)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, infer(frozen_bn.join(base, head), x))
    assert not model.layers[0].trainable  # froze through the base


def test_joined_model_saves_and_loads(tmp_path):
    model = conv_bn_sequential()
    x = images(2, size=8)
    joined = frozen_bn.join(*frozen_bn.split_model(model, 1))
    path = str(tmp_path / "joined.keras")

    joined.save(path)
    loaded = keras.models.load_model(path)

    np.testing.assert_array_equal(infer(loaded, x), infer(model, x))


def test_split_rejects_cut_after_last_layer():
    model = conv_bn_sequential()
    with pytest.raises(
        ValueError,
        match=r"model output is computed .* Nearest cut points: "
        r"\['batch_normalization', 're_lu', 'global_average_pooling2d'\]",
    ):
        frozen_bn.split_model(model, -1)


def test_split_rejects_cut_after_input_layer():
    inputs = keras.Input((4,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(2, name="d")(inputs))
    with pytest.raises(ValueError, match=r"it is an input layer"):
        frozen_bn.split_model(model, "features")


def test_split_rejects_unknown_layer_name():
    model = conv_bn_sequential()
    with pytest.raises(
        ValueError, match=r"Received: at='nope'.*cut points are \['conv2d"
    ):
        frozen_bn.split_model(model, "nope")


def test_split_rejects_layer_inside_nested_model():
    backbone = conv_bn_sequential()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(backbone(inputs)))
    inner = backbone.layers[1].name
    with pytest.raises(ValueError, match=r"inside nested model 'small'"):
        frozen_bn.split_model(model, inner)


def test_split_rejects_out_of_range_index():
    with pytest.raises(ValueError, match=r"Received: at=5"):
        frozen_bn.split_model(conv_bn_sequential(), 5)


def test_split_rejects_bad_at_type():
    with pytest.raises(TypeError, match=r"Received: at=1.5 of type float"):
        frozen_bn.split_model(conv_bn_sequential(), 1.5)


def test_split_rejects_non_model():
    with pytest.raises(TypeError, match=r"Received: model='resnet'"):
        frozen_bn.split_model("resnet", 3)


def test_split_rejects_subclassed_model():
    model = subclassed_model()
    with pytest.raises(ValueError, match=r"subclassed model has no graph"):
        frozen_bn.cut_points(model)


def test_split_rejects_unbuilt_sequential():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"Expected `model` to be built"):
        frozen_bn.split_model(model, 0)


def test_join_rejects_parts_that_do_not_fit():
    model = conv_bn_sequential()
    base, _ = frozen_bn.split_model(model, 1)
    _, head = frozen_bn.split_model(model, 3)
    with pytest.raises(ValueError, match=r"Expected `head` to take"):
        frozen_bn.join(base, head)


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_split_rejects_cut_after_keras_hub_output():
    model = keras_hub_models.shared_backbone("resnet_v2")
    with pytest.raises(
        ValueError,
        match=r"after 'post_relu' .*model output is computed .* Nearest cut "
        r"points: \[.*'stack1_block0_out', 'post_bn'\]",
    ):
        frozen_bn.split_model(model, "post_relu")


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_split_rejects_layer_inside_keras_hub_backbone():
    classifier = keras_hub_models.image_classifier("resnet_v1")
    with pytest.raises(
        ValueError,
        match=r"Received: at='pool1_pool', which is inside nested model "
        rf"'{classifier.backbone.name}'",
    ):
        frozen_bn.split_model(classifier, "pool1_pool")


@keras_hub_models.requires_keras_hub
@pytest.mark.slow
def test_join_rejects_keras_hub_parts_that_do_not_fit():
    model = keras_hub_models.shared_backbone("resnet_v1")
    base, _ = frozen_bn.split_model(model, "pool1_pool")
    _, head = frozen_bn.split_model(model, "stack1_block0_add")
    with pytest.raises(ValueError, match=r"Expected `head` to take"):
        frozen_bn.join(base, head)


@keras_hub_models.requires_keras_hub
def test_split_rejects_model_class():
    with pytest.raises(
        TypeError,
        match=r"Expected `model` to be a keras.Model. "
        r"Received: model=<class '.*\.ResNetBackbone'>",
    ):
        frozen_bn.cut_points(keras_hub_models.keras_hub.models.ResNetBackbone)


def test_join_rejects_non_model():
    base, _ = frozen_bn.split_model(conv_bn_sequential(), 1)
    with pytest.raises(TypeError, match=r"Received: head=None"):
        frozen_bn.join(base, None)
