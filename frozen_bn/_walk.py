"""The one way frozen_bn walks a model: its layers and its recorded graph.

Works for Keras 3 and tf_keras models alike. Keras has no public API for a
model's nested layers or for the arguments recorded in its graph, so the
private attributes this needs are read here and nowhere else:
`_flatten_layers` (both Kerases), `_nodes_by_depth` (Functional models), and
a node's recorded keyword arguments (`node.arguments.kwargs` in Keras 3,
`node.call_kwargs` in tf_keras).
"""

import sys

import keras


def iter_layers(model):
    """Yields every layer inside `model`, depth first, in model order.

    Nested models (and the layers inside them) and layers tracked by
    subclassed models and layers (attributes, lists, dicts: the sublayers of
    a custom block layer) are included; a shared layer is yielded once.
    `model` itself is not.
    """
    for layer, _ in iter_layers_with_parents(model):
        yield layer


def iter_layers_with_parents(model):
    """Yields `(layer, parents)` for every layer of `iter_layers(model)`.

    `parents` is the tuple of layers between `model` (excluded) and `layer`,
    outermost first: `()` for a layer of `model` itself, `(block,)` for a
    sublayer of a custom layer `block`. A shared layer comes with the
    parents it is first reached through.
    """
    seen = set()

    def visit(layer, parents):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            if id(child) not in seen:
                seen.add(id(child))
                yield child, parents
                yield from visit(child, (*parents, child))

    yield from visit(model, ())


def layer_path(layer, parents):
    """`layer`'s name prefixed by its parents': `"block/conv"`."""
    return "/".join([*(parent.name for parent in parents), layer.name])


def batch_norm_classes():
    """The BatchNormalization base classes of every loaded Keras."""
    classes = [keras.layers.BatchNormalization]
    # tf_keras is only considered when the user already imported it: a
    # tf_keras model cannot exist otherwise, and importing it is slow.
    if "tf_keras" in sys.modules:
        from frozen_bn import tf_keras

        classes.extend(tf_keras.stock_batch_norm_classes())
    return tuple(classes)


def batch_norm_layers(model):
    """Every BatchNormalization layer inside `model`, in model order."""
    classes = batch_norm_classes()
    return [layer for layer in iter_layers(model) if isinstance(layer, classes)]


def graph_nodes(model):
    """The nodes of a Functional model's graph; none for other models."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None) or {}
    return [node for nodes in nodes_by_depth.values() for node in nodes]


def _recorded_kwargs(node):
    arguments = getattr(node, "arguments", None)
    if arguments is not None:  # Keras 3
        return arguments.kwargs
    return getattr(node, "call_kwargs", None) or {}  # tf_keras


def node_layer(node):
    """The layer (or nested model) a graph node calls."""
    return getattr(node, "operation", None) or getattr(node, "layer", None)


def called_in_inference_mode(model):
    """BN layers that the recorded graph calls with `training=False`.

    A layer counts when a graph inside `model` (the model's own or a nested
    Functional model's) calls it with `training=False`, or calls a nested
    model containing it that way: the Keras transfer-learning guide's
    `base_model(x, training=False)`.

    Returns:
        A list of layers, in model order.
    """
    marked = set()
    for graph in (model, *iter_layers(model)):
        for node in graph_nodes(graph):
            if _recorded_kwargs(node).get("training") is False:
                called = node_layer(node)
                marked.add(id(called))
                marked.update(id(layer) for layer in iter_layers(called))
    return [layer for layer in batch_norm_layers(model) if id(layer) in marked]
