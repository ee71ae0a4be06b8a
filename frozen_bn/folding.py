"""Folding BatchNormalization layers into the layer before them."""

import collections
import dataclasses

import keras
import numpy as np

from frozen_bn import _walk
from frozen_bn.layers import BatchNormalization as FrozenBatchNormalization


def _scale_output_axis(kernel, scale):
    return kernel * scale


def _scale_transposed(kernel, scale):
    # Transposed convolutions store kernels as (*window, out, in).
    return kernel * scale[:, None]


def _scale_depthwise(kernel, scale):
    # Depthwise output channel `c * multiplier + m` comes from `[..., c, m]`.
    return kernel * np.reshape(scale, kernel.shape[-2:])


# The layers a BN can fold into: the name of the weight that produces their
# output channels, and how to scale it per channel. Exact classes only: a
# subclass may compute something else with the same weights.
_FOLDABLE = {
    keras.layers.Dense: ("kernel", _scale_output_axis),
    keras.layers.Conv1D: ("kernel", _scale_output_axis),
    keras.layers.Conv2D: ("kernel", _scale_output_axis),
    keras.layers.Conv3D: ("kernel", _scale_output_axis),
    keras.layers.SeparableConv1D: ("pointwise_kernel", _scale_output_axis),
    keras.layers.SeparableConv2D: ("pointwise_kernel", _scale_output_axis),
    keras.layers.DepthwiseConv1D: ("kernel", _scale_depthwise),
    keras.layers.DepthwiseConv2D: ("kernel", _scale_depthwise),
    keras.layers.Conv1DTranspose: ("kernel", _scale_transposed),
    keras.layers.Conv2DTranspose: ("kernel", _scale_transposed),
    keras.layers.Conv3DTranspose: ("kernel", _scale_transposed),
}

# On the TensorFlow backend, Keras 3.15.1 computes these layers wrongly in
# `channels_first` once they have a bias (their `channels_last` twins agree
# with the other backends), so adding one by folding would change the model.
_TF_CHANNELS_FIRST_BIAS_BUG = (
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
)

# Stands in for a folded BN while the graph is cloned; calling it is skipped.
_REMOVED = object()


@dataclasses.dataclass(frozen=True)
class FoldReport:
    """What `fold_batch_norms` folded and what it kept.

    Layers inside nested models and custom layers are named by their path,
    e.g. `"nested_model/layer"` or `"block/layer"`.

    Attributes:
        folded: Tuple of `(batch_norm, layer)` name pairs: each BN folded
            into the layer before it, and removed.
        kept: Tuple of `(batch_norm, reason)` pairs: each BN left in the
            model, and why it could not be folded.
    """

    folded: tuple = ()
    kept: tuple = ()

    def to_text(self):
        """The report as lines of text, one per BatchNormalization layer."""
        lines = [
            f"Folded {len(self.folded)} BatchNormalization layers, "
            f"kept {len(self.kept)}."
        ]
        lines += [f"  folded {bn} into {layer}" for bn, layer in self.folded]
        lines += [f"  kept {bn}: {reason}" for bn, reason in self.kept]
        return "\n".join(lines)


def fold_batch_norms(model):
    """Folds BatchNormalization layers into the layers before them.

    In inference mode a BatchNormalization layer is the fixed per-channel
    affine map `y = s * x + (beta - s * moving_mean)`, with
    `s = gamma / sqrt(moving_variance + epsilon)`. When it directly follows
    a `Dense`, `Conv1D/2D/3D`, `DepthwiseConv1D/2D`, `SeparableConv1D/2D`
    (its pointwise kernel) or `Conv1D/2D/3DTranspose` layer, that map can be
    merged into the layer's kernel and bias, and the BN removed: the model
    computes the same function with fewer operations.

    A BN is folded when it is called once, the layer before it is one of the
    above (exactly, not a subclass) with a linear activation, is called once,
    and feeds nothing but the BN, and the BN normalizes that layer's channel
    axis (`channels_last` and `channels_first` alike). The layer gets a bias
    if it had none. Every other BN is kept, and the report says why. Nested
    Functional and Sequential models are folded too. A custom layer (e.g.
    the blocks of keras-hub's MobileNet) is copied whole, BNs included: its
    `call` is Python code, not a graph that can be rewritten.

    Folding uses the moving statistics, so the result is for inference: it
    predicts like `model` in inference mode (up to float rounding; the
    folded weights are computed in float64), while training it would not
    normalize with batch statistics. `model` itself is not modified: the
    result is a clone with its own weights and the same `trainable` flags.
    Kept `frozen_bn` BatchNormalization layers become stock Keras ones (the
    same in inference), so the result loads without `frozen_bn`.

    The result is a plain Functional `keras.Model` (or a `keras.Sequential`)
    whatever the class of `model`, and so are the nested models in it. A
    subclass of a Functional model, such as a keras-hub backbone or task,
    would rebuild its layers, folded BNs included, from its constructor
    arguments when loaded; the plain model saves its graph instead. A
    keras-hub task's `preprocessor` is not part of its graph: the folded
    model takes preprocessed inputs.

    Args:
        model: A built Functional or Sequential `keras.Model` (a subclassed
            Functional model, such as a keras-hub backbone, included).

    Returns:
        A tuple `(folded_model, report)`: the new model and a `FoldReport`.

    Example:

    >>> folded, report = frozen_bn.fold_batch_norms(model)
    >>> print(report.to_text())
    >>> folded.save("model_folded.keras")
    """
    # 1. Decide which BN folds into which layer.
    _check_model(model)
    folds, kept = _plan(model)
    # 2. Clone the graph without the folded BNs.
    clones = {}
    folded_model = _clone(model, folds, clones)
    clones[id(model)] = (model, folded_model)
    # 3. Copy weights and `trainable` flags, parents before children: a
    # layer's `trainable` flag sets its sublayers'.
    inside = {}  # id -> clone, for the sublayers of layers cloned whole.
    for layer in (model, *_walk.iter_layers(model)):
        if id(layer) in clones:
            clone = clones[id(layer)][1]
        elif id(layer) in inside:
            clone = inside[id(layer)]  # Its weights came with its parent's.
        else:
            continue  # A folded BN.
        if clone.trainable != layer.trainable:  # The setter recurses.
            clone.trainable = layer.trainable
        if id(layer) in folds.producers:
            _set_folded_weights(layer, folds.producers[id(layer)], clone)
        elif id(layer) in clones and not _is_graph(layer):
            clone.set_weights(layer.get_weights())
            inside.update(_sublayer_clones(layer, clone))
    return folded_model, FoldReport(tuple(folds.names), tuple(kept))


def _sublayer_clones(layer, clone):
    """`{id(sublayer): its clone}` for a layer rebuilt from its config."""
    originals = list(_walk.iter_layers(layer))
    copies = list(_walk.iter_layers(clone))
    if [type(x) for x in originals] != [type(x) for x in copies]:
        return {}  # Not rebuilt alike: its sublayers keep their own flags.
    return {id(x): y for x, y in zip(originals, copies, strict=True)}


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected `model` to be a keras.Model. "
            f"Received: model={model!r} of type {type(model)}"
        )
    if not _is_graph(model):
        raise ValueError(
            "Expected `model` to be a Functional or Sequential model: the "
            "graph of a subclassed model cannot be rewritten. "
            f"Received: model={model!r} of type {type(model)}"
        )
    if not model.built:
        raise ValueError(
            "Expected `model` to be built (its BN layers have no statistics "
            "yet): give it an `Input` or call it on data first. "
            f"Received: model={model!r}"
        )


def _is_graph(layer):
    return isinstance(layer, keras.Sequential) or bool(_walk.graph_nodes(layer))


@dataclasses.dataclass
class _Folds:
    producers: dict = dataclasses.field(default_factory=dict)  # id -> BN
    batch_norms: set = dataclasses.field(default_factory=set)  # ids
    names: list = dataclasses.field(default_factory=list)


def _plan(model):
    """Decides which BN folds into which layer; returns `(_Folds, kept)`."""
    graphs = [model, *filter(_is_graph, _walk.iter_layers(model))]
    edges = {id(graph): list(_edges(graph)) for graph in graphs}
    calls = collections.Counter(
        id(layer) for graph_edges in edges.values() for layer, *_ in graph_edges
    )
    classes = _walk.batch_norm_classes()
    decisions = {}  # id(bn) -> (producer or None, reason or None)
    for graph in graphs:
        for bn, producer, users in edges[id(graph)]:
            if isinstance(bn, classes):
                reason = _why_kept(bn, producer, users, calls)
                decisions.setdefault(id(bn), (producer, reason))
    folds, kept = _Folds(), []
    for bn, parents in _walk.iter_layers_with_parents(model):
        if not isinstance(bn, classes):
            continue
        name = _walk.layer_path(bn, parents)
        producer, reason = decisions.get(
            id(bn), (None, _why_not_in_a_graph(parents))
        )
        if reason:
            kept.append((name, reason))
        else:
            folds.producers[id(producer)] = bn
            folds.batch_norms.add(id(bn))
            folds.names.append((name, _walk.layer_path(producer, parents)))
    return folds, kept


def _why_not_in_a_graph(parents):
    """Why a BN that no graph calls is kept, given the layers holding it."""
    if parents and not _is_graph(parents[-1]):
        owner = parents[-1]
        return (
            f"it is called by the Python code of `{owner.name}` (a "
            f"{type(owner).__name__}), not by a Functional or Sequential "
            "graph"
        )
    return "it is not called by a model's graph"


def _edges(graph):
    """Yields `(layer, producer, users)` for each layer call in `graph`.

    `producer` is the layer whose output is the call's (first) input, or
    `None` for a model input; `users` counts the uses of that output inside
    `graph`, a model output counting as one.
    """
    if isinstance(graph, keras.Sequential):
        layers = graph.layers
        for index, layer in enumerate(layers):
            yield layer, layers[index - 1] if index else None, 1
        return
    nodes = [
        node
        for node in _walk.graph_nodes(graph)
        if not node.is_input and _walk.node_layer(node) is not None
    ]
    producers = {id(t): node for node in nodes for t in node.outputs}
    users = collections.Counter(
        id(t) for node in nodes for t in node.input_tensors
    )
    users.update(id(t) for t in keras.tree.flatten(graph.outputs))
    for node in nodes:
        if not node.input_tensors:
            continue
        first = node.input_tensors[0]
        producer = producers.get(id(first))
        if producer is not None:
            producer = _walk.node_layer(producer)
        yield _walk.node_layer(node), producer, users[id(first)]


def _why_kept(bn, producer, users, calls):
    """Why `bn` cannot fold into `producer`, or `None` if it can."""
    if calls[id(bn)] > 1:
        return f"it is called {calls[id(bn)]} times"
    if producer is None:
        return "its input is a model input"
    if type(producer) not in _FOLDABLE:
        return (
            f"it follows `{producer.name}`, a {type(producer).__name__}, "
            "which is not a layer a BN can fold into"
        )
    if calls[id(producer)] > 1:
        return f"`{producer.name}` is called {calls[id(producer)]} times"
    if users > 1:
        return f"the output of `{producer.name}` is also used elsewhere"
    if producer.activation is not keras.activations.linear:
        activation = keras.activations.serialize(producer.activation)
        return f"`{producer.name}` applies activation {activation!r} first"
    lora = getattr(producer, "lora_enabled", False)
    if producer.dtype_policy.quantization_mode or lora:
        return f"`{producer.name}` is quantized or has LoRA weights"
    rank = bn.input_spec.ndim
    channels_first = getattr(producer, "data_format", "") == "channels_first"
    if (
        channels_first
        and type(producer) in _TF_CHANNELS_FIRST_BIAS_BUG
        and keras.backend.backend() == "tensorflow"
    ):
        return (
            f"`{producer.name}` is a channels_first "
            f"{type(producer).__name__}, whose bias Keras 3.15.1 applies "
            "wrongly on the TensorFlow backend"
        )
    if bn.axis % rank != (1 if channels_first else rank - 1):
        return (
            f"it normalizes axis {bn.axis}, not the channel axis of "
            f"`{producer.name}`"
        )
    return None


def _clone(model, folds, clones):
    """Clones `model` without its folded BNs; records `clones` by layer id."""

    def clone_layer(layer):
        if id(layer) in folds.batch_norms:
            return _REMOVED
        if id(layer) not in clones:
            clones[id(layer)] = (layer, _clone_one(layer, folds, clones))
        return clones[id(layer)][1]

    def call_layer(layer, *args, **kwargs):
        if layer is _REMOVED:
            return args[0] if args else kwargs["inputs"]
        return layer(*args, **kwargs)

    if isinstance(model, keras.Sequential):
        inputs = [
            keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name)
            for x in model.inputs
        ]
        layers = [clone_layer(layer) for layer in model.layers]
        return keras.Sequential(
            [*inputs, *(layer for layer in layers if layer is not _REMOVED)],
            name=model.name,
            trainable=model.trainable,
        )
    clone = keras.models.clone_model(
        model, clone_function=clone_layer, call_function=call_layer
    )
    # `clone_model` keeps a subclass whose constructor takes `(inputs,
    # outputs)` or `(*args, **kwargs)`; the result is a plain Functional.
    plain = keras.Model(clone.input, clone.output, name=model.name)
    if clone.compiled:
        plain.compile_from_config(clone.get_compile_config())
    return plain


def _clone_one(layer, folds, clones):
    """A fresh copy of `layer` (weights are set later)."""
    if _is_graph(layer):
        return _clone(layer, folds, clones)
    config = layer.get_config()
    cls = type(layer)
    if id(layer) in folds.producers:
        config["use_bias"] = True
    elif isinstance(layer, FrozenBatchNormalization):
        # Same inference behaviour; the result must load without frozen_bn.
        config.pop("freeze_moving_stats")
        cls = keras.layers.BatchNormalization
    return cls.from_config(config)


def _batch_norm_affine(bn):
    """`(scale, shift)` of `bn` in inference mode, in float64."""

    gamma = _float64(bn.gamma) if bn.scale else 1.0
    beta = _float64(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(_float64(bn.moving_variance) + bn.epsilon)
    return scale, beta - scale * _float64(bn.moving_mean)


def _float64(variable):
    return keras.ops.convert_to_numpy(variable).astype("float64")


def _set_folded_weights(layer, bn, clone):
    """Sets `clone`'s weights to those of `layer` followed by `bn`."""
    kernel_name, scale_kernel = _FOLDABLE[type(layer)]
    values = {v.name: _float64(v) for v in layer.weights}
    scale, shift = _batch_norm_affine(bn)
    values[kernel_name] = scale_kernel(values[kernel_name], scale)
    values["bias"] = values.get("bias", 0.0) * scale + shift
    for variable in clone.weights:
        variable.assign(values[variable.name].astype(variable.dtype))
