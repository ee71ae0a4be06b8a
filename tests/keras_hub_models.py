"""Small keras-hub image models built from constructor arguments.

The architectures are keras-hub's own (the same classes as its presets),
shrunk to a few filters and blocks so that a test builds one in a second
(5 to 35 seconds on JAX, which compiles every weight initializer). Presets
are never used: they download weights.

keras-hub 0.32.0 does not import with Keras 3.16 (it imports
`keras.src.backend.get_keras_mask`, which 3.16 moved); tests that need it
are marked `requires_keras_hub` and skipped there, with keras-hub's error
as the reason.
"""

import functools

import keras
import pytest

from tests.helpers import randomize_batch_norms

try:
    import keras_hub
except ImportError as error:  # keras-hub 0.32 on a Keras 3.16 nightly
    keras_hub = None
    _UNAVAILABLE = (
        f"keras-hub does not import with Keras {keras.__version__}: {error}"
    )
else:
    _UNAVAILABLE = ""

# Marks a test that builds keras-hub models: skipped, with the import error
# as the reason, where keras-hub does not import.
requires_keras_hub = pytest.mark.skipif(keras_hub is None, reason=_UNAVAILABLE)

IMAGE_SHAPE = (32, 32, 3)


def _resnet(block_type, use_pre_activation=False):
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1],
        stackwise_num_strides=[1, 2],
        block_type=block_type,
        use_pre_activation=use_pre_activation,
        image_shape=IMAGE_SHAPE,
    )


def _mobilenet_v3():
    return keras_hub.models.MobileNetBackbone(
        stackwise_expansion=[[16, 24], [32]],
        stackwise_num_blocks=[2, 1],
        stackwise_num_filters=[[8, 8], [16]],
        stackwise_kernel_size=[[3, 3], [5]],
        stackwise_num_strides=[[2, 1], [2]],
        stackwise_se_ratio=[[None, None], [0.25]],
        stackwise_activation=[["relu", "relu"], ["hard_swish"]],
        stackwise_padding=[[1, 1], [2]],
        output_num_filters=32,
        depthwise_filters=8,
        depthwise_stride=2,
        depthwise_residual=False,
        last_layer_filter=32,
        squeeze_and_excite=0.5,
        input_num_filters=8,
        image_shape=IMAGE_SHAPE,
    )


def _efficientnet():
    return keras_hub.models.EfficientNetBackbone(
        stackwise_width_coefficients=[0.25] * 3,
        stackwise_depth_coefficients=[1.0] * 3,
        stackwise_kernel_sizes=[3, 3, 5],
        stackwise_num_repeats=[1, 1, 1],
        stackwise_input_filters=[32, 16, 24],
        stackwise_output_filters=[16, 24, 40],
        stackwise_expansion_ratios=[1, 4, 6],
        stackwise_squeeze_and_excite_ratios=[0.25, 0.25, 0.25],
        stackwise_strides=[1, 2, 2],
        stackwise_block_types=["v1", "v1", "v1"],
        stackwise_force_input_filters=[0, 0, 0],
        stackwise_nores_option=[False, False, False],
        input_shape=IMAGE_SHAPE,
    )


def _cspnet():
    return keras_hub.models.CSPNetBackbone(
        stem_filters=16,
        stem_kernel_size=3,
        stem_strides=1,
        stackwise_depth=[1, 1],
        stackwise_strides=[1, 2],
        stackwise_num_filters=[16, 32],
        block_type="bottleneck_block",
        stage_type="csp",
        bottle_ratio=[0.5],
        expand_ratio=[2.0],
        image_shape=IMAGE_SHAPE,
    )


def _densenet():
    return keras_hub.models.DenseNetBackbone(
        stackwise_num_repeats=[1, 1],
        growth_rate=8,
        image_shape=IMAGE_SHAPE,
    )


def _xception():
    return keras_hub.models.XceptionBackbone(
        stackwise_conv_filters=[[8, 16], [16, 16]],
        stackwise_pooling=[True, False],
        image_shape=IMAGE_SHAPE,
    )


BACKBONES = {
    "resnet_v1": functools.partial(_resnet, "basic_block"),
    "resnet_v2": functools.partial(_resnet, "basic_block", True),
    "resnet_vd": functools.partial(_resnet, "basic_block_vd"),
    "mobilenet_v3": _mobilenet_v3,
    "efficientnet": _efficientnet,
    "cspnet": _cspnet,
    "densenet": _densenet,
    "xception": _xception,
}


def backbone(name):
    """A fresh keras-hub backbone of the named architecture."""
    return BACKBONES[name]()


@functools.cache
def shared_backbone(name):
    """A backbone with random BN statistics, built once per test session.

    Tests that change it (its weights or flags) must put it back.
    """
    return randomize_batch_norms(backbone(name))


def image_classifier(name="resnet_v1", num_classes=3, scale=None):
    """A keras-hub `ImageClassifier` task on a fresh backbone.

    With `scale`, it has a preprocessor that multiplies pixels by `scale`
    and resizes images to `IMAGE_SHAPE` (which `fit()` and `predict()`
    apply, a direct call does not).
    """
    preprocessor = None
    if scale is not None:
        converter = keras_hub.layers.ImageConverter(
            image_size=IMAGE_SHAPE[:2], scale=scale
        )
        preprocessor = keras_hub.models.ImageClassifierPreprocessor(
            image_converter=converter
        )
    return keras_hub.models.ImageClassifier(
        backbone=backbone(name),
        num_classes=num_classes,
        preprocessor=preprocessor,
    )


def ops_calls(model):
    """The `keras.ops` calls of `model`'s graph: operations, not layers."""
    return [
        op for op in model.operations if not isinstance(op, keras.layers.Layer)
    ]


def cut_name(model, at):
    """The name of the cut `at` stands for in `model`.

    `"ops.pad"` and `"ops.split"` stand for the graph's first `keras.ops.pad`
    or `split` call, whose name is only made when the model is built; any
    other `at` is a layer name, returned as is.
    """
    if not at.startswith("ops."):
        return at
    kind = at.removeprefix("ops.").capitalize()
    return next(op.name for op in ops_calls(model) if type(op).__name__ == kind)
