"""The stages of a model's architecture: its layers in the groups it defines.

Fine-tuning recipes freeze a network "up to stage k" (detectron2's
`FREEZE_AT`, mmdet's `frozen_stages`). `stages(model)` finds those stages in
a Keras model: by the stage names of the architecture's paper for the
keras.applications families, by the pyramid levels of a keras-hub backbone,
and by changes of spatial resolution for any other graph.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from frozen_bn import _stage_rules
from frozen_bn._checks import check_model
from frozen_bn._text import format_table

if TYPE_CHECKING:
    import keras


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a model: a run of consecutive top-level layers.

    Attributes:
        name: The stage's name: the paper's where `stages` knows the
            architecture (`"conv2_x"`, `"block3"`, `"entry_flow"`), the
            stack's for a keras-hub backbone (`"stack0"`), else
            `"stage{index}"`; `"top"` is the pooling and classifier.
        index: The stage's position, from 0.
        layers: The names of the stage's layers, in model order (the order
            `model.summary()` lists them).
        first: The name of the stage's first layer.
        last: The name of the stage's last layer.
        resolution: The spatial shape of the stage's output, e.g.
            `(56, 56)`; `None` where it has no spatial dimensions or they
            are unknown until the model is called (`input_shape=(None,
            None, 3)`).
        parameters: How many scalars the stage's layers hold, trainable and
            non-trainable (BN statistics included).
    """

    name: str
    index: int
    layers: tuple
    first: str
    last: str
    resolution: tuple | None
    parameters: int


def stages(model: keras.Model) -> list[Stage]:
    """The stages of `model`: its layers in the groups its architecture defines.

    Every layer of `model.layers` (what `model.summary()` lists, input
    layers included) is in exactly one stage, and each stage is a run of
    consecutive layers. A nested model is one layer here: for a classifier
    on a nested base, call `stages(model.get_layer("base"))`.

    The first of these rules that applies finds the stages. Rules 1 and 3
    place boundaries only at cuts (see `frozen_bn.cut_points`), where one
    tensor is handed on and no shortcut crosses: a residual block is
    wholly in one stage, that of its output.

    1. **keras.applications**, recognized by their layer names, in their
       paper's stages:
        - ResNet50/101/152 and V2 (He et al. 2016, "Deep Residual
          Learning", Table 1): `conv1`, `conv2_x` (starting, as in the
          paper, with the 3x3 max pool), `conv3_x`, `conv4_x`, `conv5_x`.
          V2's final BN-ReLU (`post_bn`, `post_relu`) closes `conv5_x`.
          Keras's V2 strides in the last block of `conv2_x` to `conv4_x`,
          so their outputs are half the paper's size.
        - DenseNet121/169/201 (Huang et al. 2017, Table 1): `conv1` (the
          convolution and pooling rows), `dense_block1` to `dense_block4`
          (Keras's `conv2` to `conv5`) with `transition1` to `transition3`
          (Keras's `pool2` to `pool4`) between them; the final BN-ReLU
          closes `dense_block4`.
        - MobileNetV2 (Sandler et al. 2018, Table 2, which names no
          stages): one per row, `stage0` the first convolution, `stage1`
          to `stage7` the bottleneck sequences, `stage8` the last 1x1
          convolution (`Conv_1`).
        - MobileNetV3Large and Small (Howard et al. 2019, Tables 1 and 2,
          one row per layer): `stage0` the first convolution, then the
          bottlenecks grouped by output resolution (Large: blocks 0, 1-2,
          3-5, 6-11, 12-14; Small: 0, 1-2, 3-7, 8-10), then the last 1x1
          convolution (`conv_1`).
        - EfficientNetB0 to B7 (Tan and Le 2019, Table 1): stage 1 `stem`,
          stages 2 to 8 `block1` to `block7`, stage 9 (1x1 convolution,
          pooling, classifier) `top`.
        - InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception
          Architecture", Table 1): `stem`, the figure 5 modules
          (`mixed0`-`mixed2`), the grid reduction `mixed3`, the figure 6
          modules (`mixed4`-`mixed7`), the reduction `mixed8` and the
          figure 7 modules (`mixed9`, `mixed10`), named as Inception-v4
          names them: `inception_a`, `reduction_a`, `inception_b`,
          `reduction_b`, `inception_c`.
        - Xception (Chollet 2017, Figure 5): `entry_flow` (Keras's
          `block1`-`block4`), `middle_flow` (`block5`-`block12`),
          `exit_flow` (`block13`, `block14`).
       The pooling and classifier, where there are any (`include_top=True`,
       `pooling`, or a head added on top), are the last stage, `top`.
    2. **keras-hub backbones** with `pyramid_outputs`: `stem`, then stage
       `i` ending at the layer that outputs the `i`-th pyramid level (its
       `resolution` is the level's), named after its stack (`stack0`,
       `stage_0`, `block1`), then `top` for any layers after the last
       level (ResNet V2's and DenseNet's final BN-ReLU).
    3. **Any other model**: runs of layers at one spatial resolution,
       `stage0`, `stage1`, ... The graph is split at its cuts into pieces;
       a piece whose output is at least halved in some dimension (a
       stride of 2 or more) starts a new stage, with the pieces before it
       that enlarged the resolution (padding); pieces with an unknown or
       larger output (upsampling) go with the stage after them, or the
       last. Layers at the end without spatial dimensions (`Flatten`,
       `Dense`, pooling to vectors) are the `top`. A Sequential or
       subclassed model is taken as a chain of its layers (a subclassed
       one in the order it tracks them, with unknown resolutions). With
       `None` spatial dimensions (`input_shape=(None, None, 3)`) no change
       can be seen: build the model with a fixed input shape.

    Args:
        model: A built Keras 3 `keras.Model`, on any backend. tf_keras
            models are not supported yet.

    Returns:
        A list of `Stage`s, in model order.

    Example:

    >>> model = keras.applications.ResNet50(weights=None)
    >>> [stage.name for stage in frozen_bn.stages(model)]
    ['conv1', 'conv2_x', 'conv3_x', 'conv4_x', 'conv5_x', 'top']
    >>> frozen_bn.stages(model)[1].resolution
    (56, 56)
    """
    check_model(model, keras3_only=True)
    layers = _stage_rules.graph_layers(model)
    groups = (
        _stage_rules.by_pyramid(model, layers)
        or _stage_rules.by_family(layers)
        or _stage_rules.by_resolution(layers)
    )
    counted: set[int] = set()
    result = []
    for index, (name, group) in enumerate(groups):
        weights = [
            weight
            for item in group
            for weight in item.layer.weights
            if id(weight) not in counted
        ]
        counted.update(id(weight) for weight in weights)
        last = group[-1]
        result.append(
            Stage(
                name=name,
                index=index,
                layers=tuple(item.layer.name for item in group),
                first=group[0].layer.name,
                last=last.layer.name,
                resolution=last.spatial
                if _stage_rules.is_known(last.spatial)
                else None,
                parameters=sum(math.prod(weight.shape) for weight in weights),
            )
        )
    return result


def format_stages(stages):
    """Lines of a text table of `stages`, one row per stage.

    Args:
        stages: A list of `Stage`s, as `stages(model)` returns it.

    Returns:
        A list of lines: a header, a rule, then one line per stage.
    """
    rows = [
        [
            stage.name,
            stage.first,
            stage.last,
            str(len(stage.layers)),
            "x".join(map(str, stage.resolution)) if stage.resolution else "-",
            f"{stage.parameters:,}",
        ]
        for stage in stages
    ]
    header = ["stage", "first", "last", "layers", "resolution", "parameters"]
    return format_table(header, rows, numeric={3, 5})
