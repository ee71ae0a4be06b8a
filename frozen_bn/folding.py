"""Folding BatchNormalization layers into the layer before them."""

from __future__ import annotations

import collections
import dataclasses

import keras

from frozen_bn import _copying, _flavors, _folded_weights, _walk
from frozen_bn._checks import check_model

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

    def to_text(self) -> str:
        """The report as lines of text, one per BatchNormalization layer."""
        lines = [
            f"Folded {len(self.folded)} BatchNormalization layers, "
            f"kept {len(self.kept)}."
        ]
        lines += [f"  folded {bn} into {layer}" for bn, layer in self.folded]
        lines += [f"  kept {bn}: {reason}" for bn, reason in self.kept]
        return "\n".join(lines)


def fold_batch_norms(
    model: keras.Model,
) -> tuple[keras.Model, FoldReport]:
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
    check_model(model, keras3_only=True, graph=True)
    folds, kept = _plan(model)
    # 2. Clone the graph without the folded BNs.
    clones: dict = {}
    folded_model = _clone(model, folds, clones)
    clones[id(model)] = (model, folded_model)
    # 3. Copy weights and `trainable` flags, parents before children: a
    # layer's `trainable` flag sets its sublayers'.
    for layer in (model, *_walk.iter_layers(model)):
        if id(layer) not in clones:
            continue  # A folded BN, or inside a layer copied whole.
        clone = clones[id(layer)][1]
        if id(layer) in folds.producers:
            _folded_weights.assign(clone, layer, folds.producers[id(layer)])
            _copying.set_trainable([(clone, layer.trainable)])
        elif _is_graph(layer):  # Its layers come next, each on its own.
            _copying.set_trainable([(clone, layer.trainable)])
        else:  # Copied whole, with the weights and flags inside it.
            _copying.copy_state(layer, clone)
    # 4. Kept frozen_bn layers become stock ones, as `unpatch_model` does.
    folded_model = _flavors.KERAS_3.unpatch(folded_model)
    return folded_model, FoldReport(tuple(folds.names), tuple(kept))


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
    nodes = _walk.call_nodes(graph)
    producers = {
        id(t): node for node in nodes for t in _walk.node_outputs(node)
    }
    users = collections.Counter(
        id(t) for node in nodes for t in _walk.node_inputs(node)
    )
    users.update(id(t) for t in keras.tree.flatten(graph.outputs))
    for node in nodes:
        inputs = _walk.node_inputs(node)
        if not inputs:
            continue
        first = inputs[0]
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
    if not _folded_weights.can_fold_into(producer):
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
        inputs = _copying.input_copies(model)
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
    if _walk.is_compiled(clone):
        plain.compile_from_config(clone.get_compile_config())
    return plain


def _clone_one(layer, folds, clones):
    """A fresh copy of `layer` (weights are set later)."""
    if _is_graph(layer):
        return _clone(layer, folds, clones)
    config = layer.get_config()
    if id(layer) in folds.producers:
        config["use_bias"] = True
    return type(layer).from_config(config)
