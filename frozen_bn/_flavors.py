"""What patching needs to know about each Keras: Keras 3 and tf_keras.

A flavor holds, for one Keras, the stock BatchNormalization classes and the
frozen_bn class that replaces each, how to copy a model, and what patching
and unpatching do to a model once its layers changed class.
"""

import dataclasses
import warnings
from collections.abc import Callable

import keras

from frozen_bn import _copying, _rebuild, _training_arg, _walk
from frozen_bn._reading import ModelReading
from frozen_bn._runtime import builds_static_graphs
from frozen_bn.layers import BatchNormalization


@dataclasses.dataclass(frozen=True)
class Flavor:
    """What patching needs to know about one Keras (Keras 3 or tf_keras)."""

    # Each stock BatchNormalization class and the frozen_bn class replacing it.
    patched_classes: dict
    # Returns an independent copy of a model, weights and flags included.
    copy_model: Callable
    # Called on the model once its layers changed class: returns the model
    # to hand to the user. Patching and unpatching each have their own.
    finish_patch: Callable
    finish_unpatch: Callable
    # Whether a model's graph fixes its layers' behaviour when it is built
    # (tf_keras in TF1 graph mode): then it cannot change in place.
    static_graph: bool = False

    def unpatch(self, model):
        """Turns every frozen_bn layer inside `model` back into a stock one.

        The layers change class in place (see `patched_classes`); subclasses
        of frozen_bn's classes are left alone.

        Returns:
            The model to hand to the user: `finish_unpatch(model)`.
        """
        ours = tuple(self.patched_classes.values())
        for layer in _walk.batch_norm_layers(model):
            if type(layer) in ours:
                layer._release()
        return self.finish_unpatch(model)


def flavor_of(model):
    """The flavor of a model that `check_model` accepted."""
    if isinstance(model, keras.Model):
        return KERAS_3
    from frozen_bn import tf_keras as frozen_tf_keras

    stock_v2, stock_v1 = _walk.tf_keras_batch_norm_classes()
    static_graph = builds_static_graphs()
    # In TF1 graph mode a model keeps the behaviour its graph was built
    # with: only a new model, built from the changed layers, changes it.
    finish = _copying.copy_tf_keras_model if static_graph else _identity
    return Flavor(
        {
            stock_v2: frozen_tf_keras.BatchNormalization,
            stock_v1: frozen_tf_keras.BatchNormalizationV1,
        },
        _copying.copy_tf_keras_model,
        finish,
        finish,
        static_graph,
    )


def _identity(model):
    return model


def _take_over_inference_calls(reading):
    """Drops each recorded inference-mode `training` that does only harm.

    Where a graph calls a layer or nested model with `training=False` and
    every BN layer in it is a frozen one, the frozen layers already
    normalize with their moving statistics; the recorded argument would
    only do harm: Keras 3.15 overrides it under `fit()`, and Keras 3.16
    passes it on to every layer called after it.

    A recorded `training=None` (what code that forwards its own `training`
    argument records) means "as the caller says", which is what Keras 3.15
    does with it; where the installed Keras runs it in inference mode under
    `fit()` instead (Keras 3.16), it is dropped wherever it is, so that
    `fit()` trains what the code means to train.
    """
    none_is_inference = _training_arg.honours_recorded_none()
    for call in reading.calls_recorded_with((False, None)):
        if call.training is None:
            if none_is_inference:
                _walk.forget_recorded_training(call.node)
            continue
        batch_norms = reading.batch_norms_inside([call])
        if batch_norms and all(
            isinstance(layer, BatchNormalization)
            and (layer.freeze_moving_stats or not layer.trainable)
            for layer in batch_norms
        ):
            _walk.forget_recorded_training(call.node)


def _finish_keras_patch(model):
    _take_over_inference_calls(ModelReading(model))
    reading = ModelReading(model)  # Read again: the graph changed.
    switched_off = _training_arg.switched_off_by_leak(reading)
    if switched_off:
        names = ", ".join(layer.name for layer in switched_off)
        warnings.warn(  # From the user's call of `patch_model`.
            "This Keras runs a call recorded with `training=False` (or "
            "`training=None`) in inference mode under fit(), with every "
            "layer called after it, and `freeze_moving_stats` leaves a "
            "layer that it reaches training, so the argument stays: fit() "
            f"will run these layers in inference mode: {names}",
            stacklevel=3,
        )
    spread = _training_arg.plain_call_in_training_mode(reading)
    if spread:
        warnings.warn(  # From the user's call of `patch_model`.
            "On this Keras a layer whose call defaults to training=True "
            "puts every later layer in training mode in a call without "
            "`training` (model(x), tf.function, model.export): "
            + ", ".join(f"{bn.name} (after {c.name})" for bn, c in spread)
            + ". fit() and predict() are not affected. Export with "
            "frozen_bn.export(model, ...), or call the model with "
            "training=False.",
            stacklevel=3,
        )
    _rebuild.keep_patch(model)
    return model


def _finish_keras_unpatch(model):
    _rebuild.release(model)
    return model


KERAS_3 = Flavor(
    {keras.layers.BatchNormalization: BatchNormalization},
    _copying.copy_keras_model,
    _finish_keras_patch,
    _finish_keras_unpatch,
)
