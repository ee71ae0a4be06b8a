"""Splits a model into a frozen base and a trainable head, and joins them.

Cached training runs the frozen bottom of a network once over the data and
trains the top on the stored features: the frozen part can no longer behave
differently in training and inference, and every epoch after the first skips
it entirely.

The base and the head reuse the original model's layer objects (weights are
shared, not copied): training the head trains the original model's top
layers, and `join(base, head)` gives back a model that predicts like the
original.
"""

from __future__ import annotations

import numbers

import keras
import numpy as np

from frozen_bn import _copying, _walk
from frozen_bn._checks import check_layer_index, check_model

# How many valid cut points before and after a refused one an error lists.
_NEAREST = 3


def _graph_model(model):
    """The Functional model to cut: `model`, or a Sequential's graph."""
    check_model(model, keras3_only=True, graph=True)
    if isinstance(model, keras.Sequential):
        # The public way to get a Sequential model's graph: a Functional
        # model over the same tensors, layers and nodes.
        return keras.Model(model.inputs, model.outputs)
    return model


class _Graph:
    """A Functional model's operations in order and where tensors come from.

    The operations are the model's layers and the `keras.ops` calls recorded
    in its graph (keras-hub's ResNet v2 pads with `ops.pad`, its CSPNet
    splits with `ops.split`). Both are nodes of the graph alike: a cut may
    fall before or after either.
    """

    def __init__(self, model):
        self.model = model
        self.operations = _walk.graph_operations(model)
        self.position = {id(op): i for i, op in enumerate(self.operations)}
        self.nodes = _walk.graph_nodes(model)
        # id(tensor) -> (operation position, output index). Model inputs
        # count as made before every operation: the base takes all of them
        # and hands over those the head reads.
        self.producer = {}
        for node in self.nodes:
            operation = _walk.node_layer(node)
            inputs = isinstance(operation, keras.layers.InputLayer)
            where = -1 if inputs else self.position[id(operation)]
            for index, tensor in enumerate(_walk.node_outputs(node)):
                self.producer[id(tensor)] = (where, index)

    def frontier(self, cut):
        """The tensors operations `0..cut` hand to the operations after it.

        Returns `None` when no such split exists: `cut` is an input layer,
        an operation up to `cut` reads a tensor made after it, or a model
        output is made up to `cut`.
        """
        if isinstance(self.operations[cut], keras.layers.InputLayer):
            return None
        crossing = {}
        for node in self.nodes:
            in_base = self.position[id(_walk.node_layer(node))] <= cut
            for tensor in _walk.node_inputs(node):
                made_in_base = self.producer[id(tensor)][0] <= cut
                if in_base and not made_in_base:
                    return None
                if made_in_base and not in_base:
                    crossing[id(tensor)] = tensor
        for tensor in self.model.outputs:
            if self.producer[id(tensor)][0] <= cut:
                return None
        return sorted(crossing.values(), key=lambda t: self.producer[id(t)])

    def is_cut_point(self, cut):
        frontier = self.frontier(cut)
        return frontier is not None and len(frontier) == 1


def cut_points(model: keras.Model) -> list[str]:
    """Names of the operations after which `model` can be cut at one tensor.

    A cut after a layer is a cut point when the layers up to it hand a single
    tensor to the layers after it: nothing else (a residual branch, a second
    input) crosses it. Inside a residual block `split_model` still works, but
    its base then returns several tensors.

    A Functional graph may also call `keras.ops` functions on its tensors
    (keras-hub's ResNet v2 pads with `ops.pad`, its CSPNet splits with
    `ops.split`). Such a call is a node of the graph like a layer: it can be
    cut before or after, and its name (e.g. `"pad"`) is listed here and
    accepted by `split_model`.

    Args:
        model: A Functional or built Sequential `keras.Model`.

    Returns:
        A list of layer (and `keras.ops` call) names, in the order Keras
        runs them: the order of `model.layers`.

    Example:

    >>> model = keras.applications.ResNet50(weights=None)
    >>> "conv4_block6_out" in frozen_bn.cut_points(model)
    True
    >>> "conv4_block6_3_conv" in frozen_bn.cut_points(model)  # in a block
    False
    """
    graph = _Graph(_graph_model(model))
    return [
        operation.name
        for cut, operation in enumerate(graph.operations)
        if graph.is_cut_point(cut)
    ]


def _nearest_cut_points(graph, cut):
    valid = [i for i in range(len(graph.operations)) if graph.is_cut_point(i)]
    before = [i for i in valid if i < cut][-_NEAREST:]
    after = [i for i in valid if i > cut][:_NEAREST]
    return [graph.operations[i].name for i in before + after]


def _cut_position(model, graph, at):
    """The position in `graph.operations` of what `at` names or indexes."""
    if isinstance(at, numbers.Integral) and not isinstance(at, bool | np.bool_):
        return graph.position[id(check_layer_index(at, "at", model))]
    if not isinstance(at, str):
        raise TypeError(
            "Expected `at` to be a layer name or index. "
            f"Received: at={at!r} of type {type(at).__name__}"
        )
    for operation in graph.operations:
        if operation.name == at:
            return graph.position[id(operation)]
    nested = [
        operation.name
        for operation in graph.operations
        if isinstance(operation, keras.layers.Layer)
        and any(inner.name == at for inner in _walk.iter_layers(operation))
    ]
    where = f"inside nested model {nested[0]!r}; " if nested else ""
    raise ValueError(
        f"Expected `at` to name a layer of `model`. Received: at={at!r}, "
        f"which is {where or 'not a layer name; '}cut points are "
        f"{cut_points(model)}"
    )


def split_model(model: keras.Model, at: str) -> tuple[keras.Model, keras.Model]:
    """Splits `model` after layer `at` into a base and a head.

    `head(base(x))` computes `model(x)`: the same layers run in the same
    order, so in inference mode the results are bitwise equal. The base holds
    `model`'s layers up to and including `at`, the head the layers after it.

    **Weights are shared, not copied**: both parts reuse `model`'s layer
    objects. Training the head trains `model`'s top layers, and freezing the
    base (`base.trainable = False`) freezes them in `model` too. `model`
    itself is not changed; copy it first (`keras.models.clone_model` plus
    `set_weights`) to keep the original weights.

    A cut inside a residual block is crossed by the block's shortcut: there
    the base returns a list of every tensor the head needs (ordered by the
    layer that makes each), and the head takes that list. `cut_points(model)`
    lists the cuts that hand over a single tensor.

    Args:
        model: A Functional or built Sequential `keras.Model`. Layers of a
            nested model are one layer here: split the nested model itself
            to cut inside it.
        at: The name of a layer of `model` (or of a `keras.ops` call in
            its graph, as `cut_points` lists them), or a layer's index in
            `model.layers` (negative indices count from the end). Like the
            "fine-tune from layer k+1" recipe, everything after it goes to
            the head.

    Returns:
        A pair `(base, head)` of Functional models, named `"{name}_base"`
        and `"{name}_head"`.

    Example:

    >>> model = keras.applications.ResNet50(weights=None)
    >>> base, head = frozen_bn.split_model(model, "conv4_block6_out")
    >>> base.trainable = False
    >>> features = frozen_bn.cache_features(base, images)
    >>> head.compile("adam", "sparse_categorical_crossentropy")
    >>> head.fit(features, labels, epochs=10)
    >>> model = frozen_bn.join(base, head)
    """
    graph = _Graph(_graph_model(model))
    cut = _cut_position(model, graph, at)
    frontier = graph.frontier(cut)
    if frontier is None:
        raise ValueError(
            f"Cannot split `model` after {graph.operations[cut].name!r} "
            f"(at={at!r}): "
            + _why_not(graph, cut)
            + f" Nearest cut points: {_nearest_cut_points(graph, cut)}"
        )
    handed = _structure(frontier)
    inputs = _structure(graph.model.inputs)
    base = keras.Model(inputs, handed, name=f"{model.name}_base")
    head = keras.Model(
        handed, _structure(graph.model.outputs), name=f"{model.name}_head"
    )
    return base, head


def _why_not(graph, cut):
    if isinstance(graph.operations[cut], keras.layers.InputLayer):
        return "it is an input layer."
    made_early = any(
        graph.producer[id(t)][0] <= cut for t in graph.model.outputs
    )
    if made_early:
        return "a model output is computed at or before it."
    return "an operation before the cut uses a tensor computed after it."


def _structure(tensors):
    return tensors[0] if len(tensors) == 1 else tensors


def join(
    base: keras.Model, head: keras.Model, *, name: str | None = None
) -> keras.Model:
    """One model computing `head(base(x))`, e.g. after training the head.

    The result calls `base` and `head` as nested models (their layers and
    weights are shared, not copied) and can be saved and loaded like any
    Functional model.

    Args:
        base: A Functional or built Sequential `keras.Model` returning
            what `head` takes: a tensor, or a list of tensors for a cut
            inside a residual block.
        head: A Functional or built Sequential `keras.Model`.
        name: Name of the joined model; Keras picks one if `None`.

    Returns:
        A Functional `keras.Model` with `base`'s inputs and `head`'s outputs.

    Example:

    >>> base, head = frozen_bn.split_model(model, "conv4_block6_out")
    >>> ...  # train `head` on `frozen_bn.cache_features(base, data)`
    >>> frozen_bn.join(base, head).save("finetuned.keras")
    """
    check_model(base, "base", keras3_only=True, graph=True)
    check_model(head, "head", keras3_only=True, graph=True)
    handed = [tuple(t.shape[1:]) for t in base.outputs]
    taken = [tuple(t.shape[1:]) for t in head.inputs]
    if handed != taken:
        raise ValueError(
            "Expected `head` to take what `base` returns. Received: base "
            f"returning shapes {handed}, head taking shapes {taken}"
        )
    inputs = _copying.input_copies(base)
    outputs = head(base(_structure(inputs)))
    return keras.Model(_structure(inputs), outputs, name=name)
