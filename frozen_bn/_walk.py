"""The one way frozen_bn walks a model: its layers and its recorded graph.

Works for Keras 3 and tf_keras models alike. Keras has no public API for a
model's nested layers or for the arguments recorded in its graph, so the
private attributes this needs are read here and nowhere else:
`_flatten_layers` (both Kerases), `_nodes_by_depth` (Functional models),
`_functional` (the graph a built Keras 3 Sequential model runs), a
node's operation and tensors (`node.operation` in Keras 3, `node.layer` in
tf_keras; `node.input_tensors`, `node.output_tensors`), a node's recorded
keyword arguments (`node.arguments.kwargs` in Keras 3, `node.call_kwargs` in
tf_keras), whether a node is a model input (`node.is_input`), tf_keras's
compiled flag (`_is_compiled`), the class behind
`keras.Model(inputs, outputs)` and the entry of the running call context
(`current_call_ctx` in Keras 3's global state).

A Keras 3 graph's nodes call operations: layers, nested models, and the
`keras.ops` functions called on symbolic tensors (keras-hub's ResNet v2 pads
with `ops.pad`, its CSPNet splits with `ops.split`). Those are
`keras.Operation`s but not layers: they are in a graph's nodes and
operations, never in `model.layers`.
"""

import sys

import keras

# What `recorded_training` returns for a call that records no `training`
# argument (a recorded `training=None` is another thing: Keras 3.16 runs it
# in inference mode under `fit()`).
NOT_RECORDED = type(
    "NotRecorded", (), {"__repr__": lambda self: "NOT_RECORDED"}
)()


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
        classes.extend(tf_keras_batch_norm_classes())
    return tuple(classes)


def tf_keras_batch_norm_classes():
    """tf_keras's stock BatchNormalization classes: V2, then V1.

    tf_keras exports its V1 class only through its TF1 API, so both are
    read from the modules that define them.
    """
    from tf_keras.src.layers.normalization import batch_normalization as v2
    from tf_keras.src.layers.normalization import batch_normalization_v1 as v1

    return v2.BatchNormalization, v1.BatchNormalization


def batch_norm_layers(model):
    """Every BatchNormalization layer inside `model`, in model order."""
    classes = batch_norm_classes()
    return [layer for layer in iter_layers(model) if isinstance(layer, classes)]


def graph_nodes(model):
    """The nodes of a Functional model's graph, in the order they run."""
    nodes_by_depth = getattr(model, "_nodes_by_depth", None) or {}
    return [
        node
        for depth in sorted(nodes_by_depth, reverse=True)
        for node in nodes_by_depth[depth]
    ]


def graph_operations(model):
    """Every operation of a Keras 3 Functional model's graph, in model order.

    The layers and the `keras.ops` calls of the graph, in the order Keras
    runs them: `model.layers` is this list without the `keras.ops` calls.
    Empty for other models.
    """
    return list(getattr(model, "operations", None) or [])


def call_nodes(model):
    """The nodes of `graph_nodes(model)` that call an operation.

    Those of the model's inputs are left out: they call nothing.
    """
    return [
        node
        for node in graph_nodes(model)
        if node_layer(node) is not None and not node.is_input
    ]


def node_layer(node):
    """The operation a graph node calls: a layer, a nested model or an op.

    In a Keras 3 graph a node may call a `keras.ops` function (a
    `keras.Operation` that is not a layer); tf_keras graphs have only layers.
    """
    return getattr(node, "operation", None) or getattr(node, "layer", None)


def recorded_training(node):
    """The `training` argument the graph passes at `node`.

    Returns:
        The recorded value (`True`, `False` or `None`), or `NOT_RECORDED`
        when the call passes no `training` argument.
    """
    arguments = getattr(node, "arguments", None)
    kwargs = arguments.kwargs if arguments is not None else None  # Keras 3
    if kwargs is None:
        kwargs = getattr(node, "call_kwargs", None) or {}  # tf_keras
    return kwargs.get("training", NOT_RECORDED)


def forget_recorded_training(node):
    """Makes the graph pass no `training` argument at a Keras 3 `node`."""
    node.arguments.kwargs.pop("training", None)


def node_inputs(node):
    """The tensors a graph node reads, flattened, in argument order."""
    # tf_keras holds a single tensor bare, not in a list.
    return keras.tree.flatten(node.input_tensors)


def node_outputs(node):
    """The tensors a graph node makes, flattened, in output order."""
    return keras.tree.flatten(node.output_tensors)


def paired_layers(original, copy):
    """`(layer, its copy)` for `original`, `copy` and the layers inside them.

    Pairs `(original, *iter_layers(original))` with the same list of `copy`,
    a model or layer rebuilt from `original`'s config: parents come before
    their children. Two layers pair when one's class is the other's or a
    subclass of it (a frozen_bn layer, and the stock one that a custom
    block's constructor creates again).

    Returns:
        The list of pairs, or `None` when `copy` was not rebuilt alike.
    """
    originals = [original, *iter_layers(original)]
    copies = [copy, *iter_layers(copy)]
    if len(originals) != len(copies) or not all(
        isinstance(a, type(b)) or isinstance(b, type(a))
        for a, b in zip(originals, copies, strict=True)
    ):
        return None
    return list(zip(originals, copies, strict=True))


def is_compiled(model):
    """Whether `compile()` was called on `model`."""
    # Keras 3 says `compiled`, tf_keras `_is_compiled`.
    return bool(getattr(model, "compiled", getattr(model, "_is_compiled", 0)))


def calls_in_order(model):
    """`(layer, recorded training, node)` for each call a forward pass makes.

    In the order a Keras 3 forward pass of `model` calls its layers: a
    Functional or Sequential graph node by node, a nested model's own calls
    right after the call of the model, and the layers of any other model or
    layer in the order it tracks them (their calls are not recorded: their
    `training` is `NOT_RECORDED` and their node `None`). tf_keras graphs
    record their calls too.
    """
    # A built Keras 3 Sequential model runs a Functional graph of its own.
    nodes = call_nodes(getattr(model, "_functional", None) or model)
    if nodes:
        calls = [(node_layer(n), recorded_training(n), n) for n in nodes]
    else:
        calls = [
            (child, NOT_RECORDED, None)
            for child in model._flatten_layers(
                include_self=False, recursive=False
            )
        ]
    for layer, training, node in calls:
        yield layer, training, node
        if hasattr(layer, "_flatten_layers"):  # Not a `keras.ops` call.
            yield from calls_in_order(layer)


def outermost_call():
    """The layer or model whose call started the running forward pass.

    `None` outside a call. Keras 3 keeps the call context that a forward
    pass shares in its global state; under `fit()` its entry is the model
    being fitted.
    """
    from keras.src.backend.common import global_state

    context = global_state.get_global_attribute("current_call_ctx")
    return getattr(context, "entry_layer", None)


def layers_built_in_code(model):
    """The layers of `model` that loading it would create by running code.

    A Functional or Sequential model saves the class and config of each of
    its layers. Any other model or layer (a keras-hub backbone, a custom
    block, a subclassed model) saves its own constructor arguments, and its
    constructor creates its layers again on loading.
    """
    return [
        layer
        for layer, parents in iter_layers_with_parents(model)
        if not all(map(_saves_its_layers, (model, *parents)))
    ]


def _saves_its_layers(container):
    # Keras has no public name for the class of `keras.Model(inputs, ...)`.
    from keras.src.models.functional import Functional

    original = getattr(type(container), "original_class", type(container))
    return original in (Functional, keras.Sequential)
