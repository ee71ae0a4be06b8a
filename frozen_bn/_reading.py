"""One reading of a model, which every question about its graph queries.

`diagnose`, `patch_model`, `frozen-bn inspect` and the callbacks ask several
questions about the same model: which BN layers a recorded
`training=False` reaches, which layers a leaked recorded value switches
off, which BN layers a `training=True` default puts in training mode. A
`ModelReading` walks the model once (through `frozen_bn._walk`, the one
reader of Keras internals) and answers them all from what it read.
"""

import dataclasses

from frozen_bn import _walk


@dataclasses.dataclass(frozen=True)
class Call:
    """One call that a forward pass of the model makes.

    Attributes:
        layer: The layer, nested model or `keras.ops` operation called.
        training: The `training` argument the graph records for the call:
            `True`, `False`, `None`, or `_walk.NOT_RECORDED` when the call
            passes none.
        node: The graph node of the call, or `None` where the call is not
            recorded (the layers of a custom layer or subclassed model).
    """

    layer: object
    training: object
    node: object


class ModelReading:
    """What one walk of a model found: its layers, its calls, its BN layers.

    Args:
        model: A Keras 3 or tf_keras model (or layer).

    Attributes:
        model: The model read.
        layers: `(layer, parents)` for every layer inside `model`, as
            `_walk.iter_layers_with_parents` yields them.
        calls: A `Call` per call of a forward pass of `model`, in the order
            they run (see `_walk.calls_in_order`).
        batch_norms: Every BatchNormalization layer inside `model`, in
            model order.
    """

    def __init__(self, model):
        self.model = model
        self.layers = list(_walk.iter_layers_with_parents(model))
        self.calls = [Call(*call) for call in _walk.calls_in_order(model)]
        classes = _walk.batch_norm_classes()
        self.batch_norms = [
            layer for layer, _ in self.layers if isinstance(layer, classes)
        ]
        self._inside = {}
        for layer, parents in self.layers:
            for parent in parents:
                self._inside.setdefault(id(parent), []).append(layer)

    @classmethod
    def of(cls, model_or_reading):
        """`model_or_reading` if it is a reading, else a reading of it."""
        if isinstance(model_or_reading, cls):
            return model_or_reading
        return cls(model_or_reading)

    def inside(self, layer):
        """`layer` and every layer inside it (for a nested model or block)."""
        return [layer, *self._inside.get(id(layer), ())]

    def calls_recorded_with(self, values):
        """The calls whose recorded `training` is one of `values`.

        Args:
            values: A tuple of recorded values, e.g. `(False,)` or
                `(False, None)`; compared by identity.
        """
        return [
            call
            for call in self.calls
            if call.node is not None
            and any(call.training is value for value in values)
        ]

    def batch_norms_inside(self, calls):
        """The BN layers that `calls` run, themselves or inside their callee.

        Returns:
            A list of BN layers, in model order.
        """
        reached = {
            id(layer) for call in calls for layer in self.inside(call.layer)
        }
        return [layer for layer in self.batch_norms if id(layer) in reached]

    def called_in_inference_mode(self):
        """BN layers that the recorded graph calls with `training=False`.

        A layer counts when a graph inside the model calls it, or a nested
        model containing it, with `training=False` (the Keras
        transfer-learning guide's `base_model(x, training=False)`).
        """
        return self.batch_norms_inside(self.calls_recorded_with((False,)))
