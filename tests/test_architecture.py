"""Tests for `frozen_bn.architecture`: `stages` and `format_stages`."""

import itertools

import keras
import pytest

import frozen_bn
from frozen_bn.architecture import format_stages
from tests import keras_hub_models

# Each architecture: (input size, constructor arguments, stages). A stage is
# (name, first layer, last layer, resolution), as the docstring of
# `frozen_bn.stages` documents them from the papers. Layer names Keras makes
# up ("conv2d_8") are those of a model built first after `clear_session`.
APPLICATIONS = {
    "ResNet50": (
        32,
        {"pooling": "avg"},
        [
            ("conv1", "input_layer", "conv1_relu", (16, 16)),
            ("conv2_x", "pool1_pad", "conv2_block3_out", (8, 8)),
            ("conv3_x", "conv3_block1_1_conv", "conv3_block4_out", (4, 4)),
            ("conv4_x", "conv4_block1_1_conv", "conv4_block6_out", (2, 2)),
            ("conv5_x", "conv5_block1_1_conv", "conv5_block3_out", (1, 1)),
            ("top", "avg_pool", "avg_pool", None),
        ],
    ),
    "ResNet101": (
        32,
        {"pooling": "avg"},
        [
            ("conv1", "input_layer", "conv1_relu", (16, 16)),
            ("conv2_x", "pool1_pad", "conv2_block3_out", (8, 8)),
            ("conv3_x", "conv3_block1_1_conv", "conv3_block4_out", (4, 4)),
            ("conv4_x", "conv4_block1_1_conv", "conv4_block23_out", (2, 2)),
            ("conv5_x", "conv5_block1_1_conv", "conv5_block3_out", (1, 1)),
            ("top", "avg_pool", "avg_pool", None),
        ],
    ),
    "ResNet50V2": (  # Strides in the last block of conv2_x to conv4_x.
        32,
        {"pooling": "avg"},
        [
            ("conv1", "input_layer", "conv1_conv", (16, 16)),
            ("conv2_x", "pool1_pad", "conv2_block3_out", (4, 4)),
            ("conv3_x", "conv3_block1_preact_bn", "conv3_block4_out", (2, 2)),
            ("conv4_x", "conv4_block1_preact_bn", "conv4_block6_out", (1, 1)),
            ("conv5_x", "conv5_block1_preact_bn", "post_relu", (1, 1)),
            ("top", "avg_pool", "avg_pool", None),
        ],
    ),
    "MobileNetV2": (
        32,
        {"pooling": "avg"},
        [
            ("stage0", "input_layer", "Conv1_relu", (16, 16)),
            (
                "stage1",
                "expanded_conv_depthwise",
                "expanded_conv_project_BN",
                (16, 16),
            ),
            ("stage2", "block_1_expand", "block_2_add", (8, 8)),
            ("stage3", "block_3_expand", "block_5_add", (4, 4)),
            ("stage4", "block_6_expand", "block_9_add", (2, 2)),
            ("stage5", "block_10_expand", "block_12_add", (2, 2)),
            ("stage6", "block_13_expand", "block_15_add", (1, 1)),
            ("stage7", "block_16_expand", "block_16_project_BN", (1, 1)),
            ("stage8", "Conv_1", "out_relu", (1, 1)),
            (
                "top",
                "global_average_pooling2d",
                "global_average_pooling2d",
                None,
            ),
        ],
    ),
    "MobileNetV3Small": (  # With its classifier: pooling, conv_2, logits.
        32,
        {"include_top": True, "classes": 10},
        [
            ("stage0", "input_layer", "activation", (16, 16)),
            (
                "stage1",
                "expanded_conv_depthwise_pad",
                "expanded_conv_project_bn",
                (8, 8),
            ),
            ("stage2", "expanded_conv_1_expand", "expanded_conv_2_add", (4, 4)),
            ("stage3", "expanded_conv_3_expand", "expanded_conv_7_add", (2, 2)),
            (
                "stage4",
                "expanded_conv_8_expand",
                "expanded_conv_10_add",
                (1, 1),
            ),
            ("stage5", "conv_1", "activation_17", (1, 1)),
            ("top", "global_average_pooling2d", "predictions", None),
        ],
    ),
    "MobileNetV3Large": (  # No top at all.
        32,
        {},
        [
            ("stage0", "input_layer", "activation", (16, 16)),
            (
                "stage1",
                "expanded_conv_depthwise",
                "expanded_conv_add",
                (16, 16),
            ),
            ("stage2", "expanded_conv_1_expand", "expanded_conv_2_add", (8, 8)),
            ("stage3", "expanded_conv_3_expand", "expanded_conv_5_add", (4, 4)),
            (
                "stage4",
                "expanded_conv_6_expand",
                "expanded_conv_11_add",
                (2, 2),
            ),
            (
                "stage5",
                "expanded_conv_12_expand",
                "expanded_conv_14_add",
                (1, 1),
            ),
            ("stage6", "conv_1", "activation_19", (1, 1)),
        ],
    ),
    "EfficientNetB0": (
        32,
        {"pooling": "avg"},
        [
            ("stem", "input_layer", "stem_activation", (16, 16)),
            ("block1", "block1a_dwconv", "block1a_project_bn", (16, 16)),
            ("block2", "block2a_expand_conv", "block2b_add", (8, 8)),
            ("block3", "block3a_expand_conv", "block3b_add", (4, 4)),
            ("block4", "block4a_expand_conv", "block4c_add", (2, 2)),
            ("block5", "block5a_expand_conv", "block5c_add", (2, 2)),
            ("block6", "block6a_expand_conv", "block6d_add", (1, 1)),
            ("block7", "block7a_expand_conv", "block7a_project_bn", (1, 1)),
            ("top", "top_conv", "avg_pool", None),
        ],
    ),
    "DenseNet121": (
        32,
        {"pooling": "avg"},
        [
            ("conv1", "input_layer", "pool1", (8, 8)),
            (
                "dense_block1",
                "conv2_block1_0_bn",
                "conv2_block6_concat",
                (8, 8),
            ),
            ("transition1", "pool2_bn", "pool2_pool", (4, 4)),
            (
                "dense_block2",
                "conv3_block1_0_bn",
                "conv3_block12_concat",
                (4, 4),
            ),
            ("transition2", "pool3_bn", "pool3_pool", (2, 2)),
            (
                "dense_block3",
                "conv4_block1_0_bn",
                "conv4_block24_concat",
                (2, 2),
            ),
            ("transition3", "pool4_bn", "pool4_pool", (1, 1)),
            ("dense_block4", "conv5_block1_0_bn", "relu", (1, 1)),
            ("top", "avg_pool", "avg_pool", None),
        ],
    ),
    "InceptionV3": (
        75,
        {"pooling": "avg"},
        [
            ("stem", "input_layer", "max_pooling2d_1", (7, 7)),
            ("inception_a", "conv2d_8", "mixed2", (7, 7)),
            ("reduction_a", "conv2d_27", "mixed3", (3, 3)),
            ("inception_b", "conv2d_34", "mixed7", (3, 3)),
            ("reduction_b", "conv2d_72", "mixed8", (1, 1)),
            ("inception_c", "conv2d_80", "mixed10", (1, 1)),
            (
                "top",
                "global_average_pooling2d",
                "global_average_pooling2d",
                None,
            ),
        ],
    ),
    "Xception": (
        71,
        {"pooling": "avg"},
        [
            ("entry_flow", "input_layer", "add_2", (5, 5)),
            ("middle_flow", "block5_sepconv1_act", "add_10", (5, 5)),
            (
                "exit_flow",
                "block13_sepconv1_act",
                "block14_sepconv2_act",
                (3, 3),
            ),
            (
                "top",
                "global_average_pooling2d",
                "global_average_pooling2d",
                None,
            ),
        ],
    ),
}

# keras-hub backbones with pyramid outputs: their stage names.
HUB_STAGES = {
    "resnet_v1": ["stem", "stack0", "stack1"],
    "resnet_v2": ["stem", "stack0", "stack1", "top"],  # top: post_bn, _relu
    "resnet_vd": ["stem", "stack0", "stack1"],
    "efficientnet": ["stem", "block1", "block2", "block3"],
    "cspnet": ["stem", "stage_0", "stage_1"],
    "densenet": ["stem", "stack1", "stack2", "top"],  # top: bn, relu
}


def table(found):
    return [
        (stage.name, stage.first, stage.last, stage.resolution)
        for stage in found
    ]


def assert_partition(model, found):
    """Every layer in one stage, in model order; counts and boundaries."""
    assert [name for stage in found for name in stage.layers] == [
        layer.name for layer in model.layers
    ]
    for index, stage in enumerate(found):
        assert stage.index == index
        assert (stage.first, stage.last) == (stage.layers[0], stage.layers[-1])
        assert stage.parameters == sum(
            model.get_layer(name).count_params() for name in stage.layers
        )
    assert sum(stage.parameters for stage in found) == model.count_params()


def assert_cut_between_stages(model, found):
    """No shortcut crosses a boundary: one tensor is handed on there."""
    cuts = set(frozen_bn.cut_points(model))
    assert all(stage.last in cuts for stage in found[:-1])


def assert_resolution_never_grows(found):
    sizes = [stage.resolution for stage in found if stage.resolution]
    assert all(
        later[0] <= earlier[0] and later[1] <= earlier[1]
        for earlier, later in itertools.pairwise(sizes)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_keras_applications_stages_follow_their_papers(name):
    size, arguments, expected = APPLICATIONS[name]
    arguments = {"include_top": False, **arguments}
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3), **arguments
    )

    found = frozen_bn.stages(model)

    assert table(found) == expected
    assert_partition(model, found)
    assert_cut_between_stages(model, found)
    assert_resolution_never_grows(found)


@keras_hub_models.requires_keras_hub
@pytest.mark.parametrize("name", sorted(HUB_STAGES))
def test_keras_hub_backbone_has_one_stage_per_pyramid_level(name):
    model = keras_hub_models.backbone(name)

    found = frozen_bn.stages(model)

    assert [stage.name for stage in found] == HUB_STAGES[name]
    assert_partition(model, found)
    stacks = found[1 : len(model.pyramid_outputs) + 1]
    for stage, level in zip(
        stacks, model.pyramid_outputs.values(), strict=True
    ):
        assert model.get_layer(stage.last).output is level
        assert stage.resolution == tuple(level.shape[1:3])


@keras_hub_models.requires_keras_hub
def test_keras_hub_backbone_without_pyramid_goes_by_resolution():
    model = keras_hub_models.backbone("mobilenet_v3")

    found = frozen_bn.stages(model)

    assert table(found) == [
        ("stage0", model.layers[0].name, "activation", (16, 16)),
        ("stage1", "block_0_0", "block_0_0", (8, 8)),
        ("stage2", "block_1_0", "block_1_1", (4, 4)),
        ("stage3", "block_2_0", "block_3_0", (2, 2)),
    ]
    assert_partition(model, found)


def residual_net():
    """A small conv net: a stem, padding before a strided convolution,
    squeeze-and-excite, a bottleneck that strides in its second layer,
    then pooling and a classifier."""
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.ZeroPadding2D(1, name="down_pad")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, name="down_conv")(x)
    # Squeeze-and-excite: its pooled (1, 1) branch is no stage of its own.
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
    s = keras.layers.Conv2D(8, 1, activation="sigmoid", name="se_conv")(s)
    x = keras.layers.Multiply(name="se_scale")([x, s])
    # A bottleneck whose first layer still runs at (8, 8): the whole block
    # goes to the stage of its output.
    y = keras.layers.Conv2D(4, 1, name="block_reduce")(x)
    y = keras.layers.Conv2D(
        16, 3, strides=2, padding="same", name="block_conv"
    )(y)
    shortcut = keras.layers.Conv2D(16, 1, strides=2, name="block_shortcut")(x)
    x = keras.layers.Add(name="block_add")([shortcut, y])
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(3, name="classifier")(x)
    return keras.Model(inputs, outputs)


def test_other_graphs_split_where_the_resolution_halves():
    model = residual_net()

    found = frozen_bn.stages(model)

    assert table(found) == [
        ("stage0", "image", "stem_relu", (16, 16)),
        ("stage1", "down_pad", "se_scale", (8, 8)),
        ("stage2", "block_reduce", "block_add", (4, 4)),
        ("top", "pool", "classifier", None),
    ]
    assert_partition(model, found)
    assert_cut_between_stages(model, found)


def test_sequential_model_is_a_chain():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Conv2D(4, 3, name="valid_1"),  # (14, 14)
            keras.layers.Conv2D(4, 3, name="valid_2"),  # (12, 12): same stage
            keras.layers.MaxPooling2D(name="pool"),  # (6, 6)
            keras.layers.Conv2D(4, 3, padding="same", name="conv"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(2, name="dense"),
        ]
    )

    found = frozen_bn.stages(model)

    assert table(found) == [
        ("stage0", "valid_1", "valid_2", (12, 12)),
        ("stage1", "pool", "conv", (6, 6)),
        ("top", "flatten", "dense", None),
    ]
    assert_partition(model, found)


def test_layers_of_a_nested_model_are_one_layer():
    base = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, strides=2)],
        name="base",
    )
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))

    found = frozen_bn.stages(model)

    assert table(found) == [
        ("stage0", "image", "base", (7, 7)),
        ("top", "pool", "head", None),
    ]
    assert_partition(model, found)


def test_channels_first_resolution():
    inputs = keras.Input((3, 16, 16))
    x = keras.layers.Conv2D(
        4, 3, strides=2, padding="same", data_format="channels_first"
    )(inputs)
    model = keras.Model(inputs, x)

    assert [stage.resolution for stage in frozen_bn.stages(model)] == [(8, 8)]


def test_unknown_resolution_gives_one_stage_and_the_top():
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv_2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))

    assert table(frozen_bn.stages(model)) == [
        ("stage0", "image", "conv_2", None),
        ("top", "pool", "head", None),
    ]


def test_upsampling_stays_in_the_last_stage():
    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="down")(
        inputs
    )
    x = keras.layers.UpSampling2D(name="up")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="conv")(x))

    assert table(frozen_bn.stages(model)) == [
        ("stage0", "image", "conv", (16, 16))
    ]


def test_model_without_spatial_layers_is_one_stage():
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(2)]
    )

    found = frozen_bn.stages(model)

    assert [stage.name for stage in found] == ["stage0"]
    assert_partition(model, found)


def test_subclassed_model_is_a_chain_of_unknown_resolution():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = keras.layers.Conv2D(4, 3, strides=2)
            self.pool = keras.layers.GlobalAveragePooling2D()

        def call(self, x):
            return self.pool(self.conv(x))

    model = Net()
    model(keras.ops.zeros((1, 8, 8, 3)))

    found = frozen_bn.stages(model)

    assert [(stage.layers, stage.resolution) for stage in found] == [
        ((model.conv.name, model.pool.name), None)
    ]
    assert_partition(model, found)


def test_format_stages():
    found = frozen_bn.stages(residual_net())

    assert format_stages(found) == [
        "stage   first         last        layers  resolution  parameters",
        "------  ------------  ----------  ------  ----------  ----------",
        "stage0  image         stem_relu        4  16x16              256",
        "stage1  down_pad      se_scale         5  8x8                656",
        "stage2  block_reduce  block_add        4  4x4                772",
        "top     pool          classifier       2  -                   51",
    ]


def test_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="Expected `model` to be a keras.Model"):
        frozen_bn.stages(keras.layers.Dense(2))


def test_rejects_an_unbuilt_model():
    with pytest.raises(ValueError, match="Expected `model` to be built"):
        frozen_bn.stages(keras.Sequential([keras.layers.Dense(2)]))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf_keras needs TensorFlow"
)
def test_rejects_tf_keras_models():
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential(
        [tf_keras.Input((4,)), tf_keras.layers.Dense(2)]
    )

    with pytest.raises(
        TypeError, match=r"`model` to be a keras\.Model\. Received"
    ):
        frozen_bn.stages(model)
