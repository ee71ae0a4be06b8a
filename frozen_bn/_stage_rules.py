"""The rules that find a model's stages (see `frozen_bn.architecture.stages`).

Rule 1 knows the keras.applications families by their layer names, rule 2
reads a keras-hub backbone's pyramid levels, rule 3 splits any graph where
its spatial resolution halves. Each returns `(name, [_Layer, ...])` groups
that cover the model's top-level layers in order, or `None` where it does
not apply.
"""

import dataclasses
import itertools
import re

import keras

from frozen_bn import _walk
from frozen_bn.splitting import cut_points

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


def graph_layers(model):
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


def is_known(spatial):
    return spatial is not None and None not in spatial


def _is_input(layer):
    return isinstance(layer, keras.layers.InputLayer)


def by_family(layers):
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


def by_pyramid(model, layers):
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


def by_resolution(layers):
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
        if not is_known(size) or (
            is_known(resolution) and _larger(size, resolution)
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
