"""How the installed Keras 3 treats a `training` argument recorded in a graph.

The Keras transfer-learning guide calls a nested model with
`base(x, training=False)`. What `fit()` then does with that recorded value
changed between releases, and frozen_bn's advice depends on it:

- Keras 3.0 to 3.15 override it: `fit()` runs the nested model in training
  mode, and its BatchNormalization layers normalize with batch statistics.
- Keras 3.16 honours it, but the value stays in the call context that the
  whole forward pass shares, so every layer that runs after the nested call
  runs in inference mode too (its BatchNormalization and Dropout layers stop
  training).

Rather than trusting a version number, frozen_bn measures the installed
Keras once per process on a three-layer model without weights.
"""

import functools
import inspect

import keras
import numpy as np

from frozen_bn import _walk


class _TrainingMarker(keras.layers.Layer):
    """Adds `mark` to its inputs when called in training mode."""

    def __init__(self, mark, **kwargs):
        super().__init__(**kwargs)
        self.mark = mark

    def call(self, inputs, training=None):
        return inputs + self.mark if training else inputs


@functools.cache
def _training_mode_marks():
    """Which markers run in training mode in a training-mode call.

    The probe is `before -> nested(training=False) -> after`, called with
    `training=True` as `fit()` calls a model. Explicit names keep Keras's
    automatic name counters (and so the user's layer names) untouched.
    """
    inputs = keras.Input((1,), name="frozen_bn_probe_input")
    nested_inputs = keras.Input((1,), name="frozen_bn_probe_nested_input")
    nested = keras.Model(
        nested_inputs,
        _TrainingMarker(2.0, name="frozen_bn_probe_inside")(nested_inputs),
        name="frozen_bn_probe_nested",
    )
    x = _TrainingMarker(1.0, name="frozen_bn_probe_before")(inputs)
    x = nested(x, training=False)
    x = _TrainingMarker(4.0, name="frozen_bn_probe_after")(x)
    probe = keras.Model(inputs, x, name="frozen_bn_probe")
    total = probe(np.zeros((1, 1), "float32"), training=True)
    return int(keras.ops.convert_to_numpy(total).item())


def honours_recorded_training():
    """Whether `fit()` keeps a recorded `training=False` (Keras >= 3.16)."""
    return not _training_mode_marks() & 2


def leaks_recorded_training():
    """Whether a recorded `training` value reaches the layers called after
    it in the same forward pass (Keras 3.16)."""
    return not _training_mode_marks() & 4


def switched_off_by_leak(model):
    """The layers that a leaked `training=False` runs in inference mode.

    On a Keras that leaks a recorded `training` value (see
    `leaks_recorded_training`), a training-mode call of `model`, as `fit()`
    makes, runs every layer called after a `training=False` call in
    inference mode, up to the next call with a recorded `training=True`.
    The layers inside the called model are meant to be in inference mode
    and do not count.

    Returns:
        The BN layers that are not frozen, and the Dropout and noise
        layers, that the leak reaches, in the order the forward pass calls
        them; empty where the installed Keras does not leak.
    """
    if not leaks_recorded_training():
        return []
    meant = {
        id(layer)
        for _, callee in _walk.inference_calls(model)
        for layer in (callee, *_walk.iter_layers(callee))
    }
    training, switched_off = True, []
    for layer, recorded in _walk.calls_in_order(model):
        if recorded is not None:
            training = recorded
        elif not (training or id(layer) in meant) and _would_train(layer):
            switched_off.append(layer)
    return switched_off


def _would_train(layer):
    """Whether `fit()` means `layer` to act as in training mode."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return layer.trainable and not getattr(
            layer, "freeze_moving_stats", False
        )
    return is_training_only(layer)


def is_training_only(layer):
    """Whether `layer` is a Dropout or noise layer (by class name)."""
    return any(
        name in cls.__name__
        for cls in type(layer).__mro__
        for name in ("Dropout", "Noise")
    )


class _TrainingByDefault(keras.layers.Layer):
    """Passes its inputs through; its `call` defaults to training mode."""

    def call(self, inputs, training=True):
        return inputs


@functools.cache
def spreads_training_default():
    """Whether a layer's `training=True` default reaches the layers called
    after it in a call without `training` (Keras <= 3.15)."""
    inputs = keras.Input((1,), name="frozen_bn_default_probe_input")
    x = _TrainingByDefault(name="frozen_bn_default_probe_default")(inputs)
    x = _TrainingMarker(1.0, name="frozen_bn_default_probe_after")(x)
    probe = keras.Model(inputs, x, name="frozen_bn_default_probe")
    total = probe(np.zeros((1, 1), "float32"))
    return bool(keras.ops.convert_to_numpy(total).item())


def plain_call_in_training_mode(model):
    """The BN layers that a call of `model` without `training` runs in
    training mode, each with the layer whose `training=True` default causes
    it.

    Returns:
        A list of `(batch_norm, culprit)` pairs in call order; empty where
        the installed Keras does not spread a layer's default (see
        `spreads_training_default`).
    """
    if not spreads_training_default():
        return []
    classes = _walk.batch_norm_classes()
    culprit, pairs = None, []
    for layer, recorded in _walk.calls_in_order(model):
        # Keras records a `training=True` default in the graph as if passed.
        training = (
            _defaults_to_training(layer) if recorded is None else recorded
        )
        if culprit is None and training:
            culprit = layer
        elif culprit is not None and isinstance(layer, classes):
            pairs.append((layer, culprit))
    return pairs


def _defaults_to_training(layer):
    """Whether `layer.call` runs in training mode when not told otherwise."""
    parameter = inspect.signature(layer.call).parameters.get("training")
    return parameter is not None and parameter.default is True
