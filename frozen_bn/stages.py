"""The stages of a model: its layers in the groups its architecture defines.

Fine-tuning recipes freeze a network "up to stage k" (detectron2's
`FREEZE_AT`, mmdet's `frozen_stages`). `stages(model)` finds those stages in
a Keras model: by the stage names of the architecture's paper for the
keras.applications families, by the pyramid levels of a keras-hub backbone,
and by changes of spatial resolution for any other graph.
"""

import dataclasses
import itertools
import math
import re

import keras

from frozen_bn import _walk
from frozen_bn._checks import check_model
from frozen_bn._text import format_table
from frozen_bn.splitting import cut_points


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


# The keras.applications families of rule 1, tried in this order
# (MobileNetV3Large before Small, whose markers it also has): the names of
# their stages (`None`: "stage0", "stage1", ...), and a marker for each stage
# after the first. A stage starts after the last cut before the first layer
# whose name matches its marker (`re.match`). The classifier top is added
# last where a family marks no "top" of its own.
_FAMILIES = (
    (  # ResNet50/101/152 and V2: He et al. 2016, Table 1.
        "conv1 conv2_x conv3_x conv4_x conv5_x",
        "pool1_pad$ conv3_block1_ conv4_block1_ conv5_block1_",
    ),
    (  # DenseNet121/169/201: Huang et al. 2017, Table 1.
        "conv1 dense_block1 transition1 dense_block2 transition2 "
        "dense_block3 transition3 dense_block4",
        "conv2_block1_ pool2_ conv3_block1_ pool3_ conv4_block1_ pool4_ "
        "conv5_block1_",
    ),
    (  # MobileNetV2: Sandler et al. 2018, Table 2.
        None,
        "expanded_conv_ block_1_ block_3_ block_6_ block_10_ block_13_ "
        "block_16_ Conv_1$",
    ),
    (  # MobileNetV3Large: Howard et al. 2019, Table 1.
        None,
        r"expanded_conv_(?!\d) expanded_conv_1_ expanded_conv_3_ "
        "expanded_conv_6_ expanded_conv_12_ conv_1$",
    ),
    (  # MobileNetV3Small: Howard et al. 2019, Table 2.
        None,
        r"expanded_conv_(?!\d) expanded_conv_1_ expanded_conv_3_ "
        "expanded_conv_8_ conv_1$",
    ),
    (  # EfficientNetB0-B7: Tan and Le 2019, Table 1.
        "stem block1 block2 block3 block4 block5 block6 block7 top",
        "block1a_ block2a_ block3a_ block4a_ block5a_ block6a_ block7a_ "
        "top_conv$",
    ),
    (  # InceptionV3: Szegedy et al. 2016, Table 1.
        "stem inception_a reduction_a inception_b reduction_b inception_c",
        "mixed0$ mixed3$ mixed4$ mixed8$ mixed9",
    ),
    (  # Xception: Chollet 2017, Figure 5.
        "entry_flow middle_flow exit_flow",
        "block5_ block13_",
    ),
)

# The marker of the classifier top: the first layer that pools space away
# (a global pooling layer, even with `keepdims=True`) or whose output has no
# spatial dimensions (`Flatten`, `Dense`).
_CLASSIFIER = None

# The stack a keras-hub layer belongs to, from its name: "stack0_block0_out"
# (ResNet, DenseNet), "stage_0_csp_..." (CSPNet), "block1a_add"
# (EfficientNet).
_STACK = re.compile(r"stack_?\d+|stage_\d+|block_?\d+")


def stages(model):
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
    check_model(model)
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected `model` to be a Keras 3 keras.Model: `stages` does not "
            f"read tf_keras graphs yet. Received: model={model.name!r} of "
            f"type {type(model).__name__}"
        )
    layers = _graph(model)
    groups = (
        _by_pyramid(model, layers)
        or _by_family(layers)
        or _by_resolution(layers)
    )
    counted = set()
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
                resolution=last.spatial if _known(last.spatial) else None,
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


@dataclasses.dataclass
class _Layer:
    """A layer of `model.layers` and what the rules read of it.

    `spatial`: the spatial part of its output shape (entries may be
    `None`), or `None` where the output has no spatial dimensions. `cut`:
    whether exactly one tensor crosses from the layers up to it (and the
    `keras.ops` calls right after it) to the layers after it.
    """

    layer: object
    spatial: tuple | None
    cut: bool


def _graph(model):
    """`_Layer`s for `model.layers`, read from `model`'s recorded graph."""
    channels_first = any(
        getattr(layer, "data_format", None) == "channels_first"
        for layer in model.layers
    )
    nodes = _walk.graph_nodes(model)
    if not nodes:  # Sequential or subclassed: a chain of layers.
        return [
            _Layer(layer, _spatial(_output_shape(layer), channels_first), True)
            for layer in model.layers
        ]
    shapes = {}
    for node in nodes:  # The first call of each operation.
        shapes.setdefault(id(_walk.node_layer(node)), _walk.node_outputs(node))
    cuts = set(cut_points(model))
    layers = []
    for op in _walk.graph_operations(model):
        if isinstance(op, keras.layers.Layer):
            shape = tuple(shapes[id(op)][0].shape)
            spatial = _spatial(shape, channels_first)
            layers.append(_Layer(op, spatial, op.name in cuts))
        else:  # A `keras.ops` call: a cut after it follows the layer before.
            layers[-1].cut = op.name in cuts
    return layers


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # Never called on symbolic inputs.
        return None


def _spatial(shape, channels_first):
    if shape is None or len(shape) < 3:
        return None
    return tuple(shape[2:] if channels_first else shape[1:-1])


def _known(spatial):
    return spatial is not None and None not in spatial


def _is_input(layer):
    return isinstance(layer, keras.layers.InputLayer)


def _by_family(layers):
    """Rule 1: the stages of the first family whose markers all match."""
    for names, markers in _FAMILIES:
        markers = markers.split()
        names = (
            names.split()
            if names
            else [f"stage{i}" for i in range(len(markers) + 1)]
        )
        if names[-1] != "top":
            names.append("top")
            markers.append(_CLASSIFIER)
        starts, searched = [0], 0
        for name, marker in zip(names[1:], markers, strict=True):
            found = next(
                (
                    i
                    for i in range(searched + 1, len(layers))
                    if _matches(marker, layers[i])
                ),
                None,
            )
            if found is None and name == "top":  # A model without a top.
                names.pop()
                break
            start = _after_last_cut(layers, starts[-1], found or 0)
            if start is None:  # Not found, or no cut before it.
                break
            starts.append(start)
            searched = found
        if len(starts) == len(names):
            return _split(layers, names, starts)
    return None


def _matches(marker, item):
    if marker is _CLASSIFIER:
        pools = type(item.layer).__name__.startswith("Global")
        return pools or item.spatial is None
    return re.match(marker, item.layer.name) is not None


def _after_last_cut(layers, start, stop):
    """The position after the last cut in `layers[start:stop]`, or `None`."""
    cuts = [i for i in range(start, stop) if layers[i].cut]
    return cuts[-1] + 1 if cuts else None


def _split(layers, names, starts):
    ends = [*starts[1:], len(layers)]
    return [
        (name, layers[start:end])
        for name, start, end in zip(names, starts, ends, strict=True)
    ]


def _by_pyramid(model, layers):
    """Rule 2: a keras-hub backbone's stages end at its pyramid outputs."""
    pyramid = getattr(model, "pyramid_outputs", None)
    if not isinstance(pyramid, dict) or not pyramid:
        return None
    made = {
        id(tensor): _walk.node_layer(node)
        for node in _walk.graph_nodes(model)
        for tensor in _walk.node_outputs(node)
    }
    position = {id(item.layer): i for i, item in enumerate(layers)}
    ends = sorted(
        (position.get(id(made.get(id(tensor))), -1), level)
        for level, tensor in pyramid.items()
    )
    first_stack = _stack_name(layers[: ends[0][0] + 1])
    if ends[0][0] < 0 or first_stack is None:
        return None
    # The stem ends at the last cut before the first stack's first layer.
    opening = next(
        i for i, item in enumerate(layers) if _stack(item) == first_stack
    )
    stem_end = _after_last_cut(layers, 0, opening)
    if stem_end is None:
        return None
    starts, names = [0, stem_end], ["stem", first_stack]
    for (previous, _), (end, level) in itertools.pairwise(ends):
        starts.append(previous + 1)
        names.append(_stack_name(layers[previous + 1 : end + 1]) or level)
    if ends[-1][0] < len(layers) - 1:
        starts.append(ends[-1][0] + 1)
        names.append("top")
    return _split(layers, names, starts)


def _stack(item):
    found = _STACK.match(item.layer.name)
    return found.group() if found else None


def _stack_name(group):
    """The stack of the last layer of `group` that names one, or `None`."""
    return next(filter(None, map(_stack, reversed(group))), None)


def _by_resolution(layers):
    """Rule 3: runs of layers at one spatial resolution, then the top."""
    pieces, piece = [], []
    for item in layers:
        piece.append(item)
        if item.cut and not _is_input(item.layer):
            pieces.append(piece)
            piece = []
    if piece:
        pieces.append(piece)
    spatial = [
        i for i, piece in enumerate(pieces) if piece[-1].spatial is not None
    ]
    if not spatial:  # No layer with spatial dimensions: one stage.
        return [("stage0", layers)]
    top = [item for piece in pieces[spatial[-1] + 1 :] for item in piece]
    # Padding right after the input is measured against the input's size.
    first = layers[0]
    resolution = first.spatial if _is_input(first.layer) else None
    groups, pending = [], []
    for piece in pieces[: spatial[-1] + 1]:
        size = piece[-1].spatial
        if not _known(size) or (
            _known(resolution) and _larger(size, resolution)
        ):
            pending += piece
            continue
        if groups and not _halves(size, resolution):
            groups[-1] += pending + piece
        else:
            groups.append(pending + piece)
        pending, resolution = [], size
    if groups:
        groups[-1] += pending
    else:  # Every resolution unknown.
        groups = [pending]
    named = [(f"stage{i}", group) for i, group in enumerate(groups)]
    return named + ([("top", top)] if top else [])


def _larger(size, resolution):
    """Whether `size` is larger than `resolution` anywhere, or another rank."""
    return len(size) != len(resolution) or any(
        new > old for new, old in zip(size, resolution, strict=True)
    )


def _halves(size, resolution):
    """Whether `size` (not larger) is `resolution` after a stride of 2+."""
    return any(
        new < old and 2 * new <= old + 1
        for new, old in zip(size, resolution, strict=True)
    )
