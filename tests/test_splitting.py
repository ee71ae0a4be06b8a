"""Tests for `split_model`, `cut_points` and `join` (Keras 3, every backend)."""

import keras
import numpy as np
import pytest

import frozen_bn
from tests.conftest import all_weights, assert_weights_bitwise_equal, to_numpy

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


def images(count=2, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, size, size, 3)).astype("float32")


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
    x = images()
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
    x = images()

    joined = frozen_bn.join(*frozen_bn.split_model(model, at))

    np.testing.assert_array_equal(infer(joined, x), infer(model, x))


@pytest.mark.slow
def test_split_does_not_change_model(applications):
    model = application(applications, "ResNet50")
    before = all_weights(model)
    layers = [(type(la), la.name, la.trainable) for la in model.layers]
    x = images()
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
    x = images(size=8)

    base, head = frozen_bn.split_model(model, at)

    np.testing.assert_array_equal(infer(head, infer(base, x)), infer(model, x))
    assert frozen_bn.cut_points(model) == [la.name for la in model.layers[:-1]]


def test_split_after_nested_backbone():
    backbone = conv_bn_sequential()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(2)(backbone(inputs, training=False))
    model = keras.Model(inputs, outputs)
    x = images(size=8)

    base, head = frozen_bn.split_model(model, backbone.name)

    assert base.layers[-1] is backbone
    np.testing.assert_array_equal(infer(head, infer(base, x)), infer(model, x))


def test_base_hands_over_inputs_the_head_reads():
    first = keras.Input((4,), name="first")
    second = keras.Input((2,), name="second")
    x = keras.layers.Dense(3, name="hidden")(first)
    x = keras.layers.Concatenate(name="join")([x, second])
    model = keras.Model([first, second], keras.layers.Dense(1)(x))
    x = [images(count=3)[:, 0, :4, 0], images(count=3)[:, 0, :2, 0]]

    base, head = frozen_bn.split_model(model, "hidden")

    assert [t.shape for t in base.outputs] == [(None, 2), (None, 3)]
    np.testing.assert_array_equal(infer(head, base(x)), infer(model, x))
    assert frozen_bn.cut_points(model) == ["join"]


def test_weights_are_shared_with_model():
    model = conv_bn_sequential()
    x = images(count=8, size=8)
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
    x = images(size=8)
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
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match=r"subclassed model has no graph"):
        frozen_bn.cut_points(model)


def test_split_rejects_unbuilt_sequential():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"built Sequential"):
        frozen_bn.split_model(model, 0)


def test_join_rejects_parts_that_do_not_fit():
    model = conv_bn_sequential()
    base, _ = frozen_bn.split_model(model, 1)
    _, head = frozen_bn.split_model(model, 3)
    with pytest.raises(ValueError, match=r"Expected `head` to take"):
        frozen_bn.join(base, head)


def test_join_rejects_non_model():
    base, _ = frozen_bn.split_model(conv_bn_sequential(), 1)
    with pytest.raises(TypeError, match=r"Received: head=None"):
        frozen_bn.join(base, None)
