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

- Keras 3.16 also runs a call recorded with `training=None` (what code
  that forwards its own `training` argument records) in inference mode
  under `fit()`, and passes that on too; 3.15 runs it in training mode.
- Keras <= 3.15 let a layer whose `call` defaults to `training=True` put
  every later layer in training mode in a call without `training` (the
  exporters' call); Keras 3.16 does not.

Rather than trusting a version number, frozen_bn measures the installed
Keras once per process on three small models without weights.
"""

import functools
import inspect

import keras
import numpy as np

from frozen_bn import _walk
from frozen_bn._reading import ModelReading


class _TrainingMarker(keras.layers.Layer):
    """Adds `mark` to its inputs when called in training mode."""

    def __init__(self, mark, **kwargs):
        super().__init__(**kwargs)
        self.mark = mark

    def call(self, inputs, training=None):
        return inputs + self.mark if training else inputs


class _DefaultsToTraining(keras.layers.Layer):
    """Does nothing, with a `call` defaulting to `training=True`."""

    def call(self, inputs, training=True):
        return inputs


def _marker(mark, name):
    # Explicit names keep Keras's automatic name counters (and so the
    # user's layer names) untouched.
    return _TrainingMarker(mark, name=f"frozen_bn_probe_{name}")


@functools.cache
def _training_mode_marks(recorded):
    """Which markers run in training mode in a training-mode call.

    The probe is `before -> nested(training=recorded) -> after`, called with
    `training=True` as `fit()` calls a model.
    """
    inputs = keras.Input((1,), name="frozen_bn_probe_input")
    nested_inputs = keras.Input((1,), name="frozen_bn_probe_nested_input")
    nested = keras.Model(
        nested_inputs,
        _marker(2.0, "inside")(nested_inputs),
        name="frozen_bn_probe_nested",
    )
    x = _marker(1.0, "before")(inputs)
    x = nested(x, training=recorded)
    x = _marker(4.0, "after")(x)
    probe = keras.Model(inputs, x, name="frozen_bn_probe")
    return _run(probe, training=True)


@functools.cache
def _plain_call_marks():
    """Which markers run in training mode in a call without `training`.

    The probe is `default(training=True) -> after`, called as an exported
    model or `model(x)` calls it.
    """
    inputs = keras.Input((1,), name="frozen_bn_probe_plain_input")
    x = _DefaultsToTraining(name="frozen_bn_probe_default")(inputs)
    x = _marker(8.0, "after_default")(x)
    probe = keras.Model(inputs, x, name="frozen_bn_probe_plain")
    return _run(probe)


def _run(probe, **kwargs):
    total = probe(np.zeros((1, 1), "float32"), **kwargs)
    return int(keras.ops.convert_to_numpy(total).item())


def honours_recorded_training():
    """Whether `fit()` keeps a recorded `training=False` (Keras >= 3.16)."""
    return not _training_mode_marks(False) & 2


def leaks_recorded_training():
    """Whether a recorded `training` value reaches the layers called after
    it in the same forward pass (Keras 3.16)."""
    return not _training_mode_marks(False) & 4


def honours_recorded_none():
    """Whether `fit()` runs a call recorded with `training=None` in
    inference mode (Keras 3.16), instead of in training mode."""
    return not _training_mode_marks(None) & 2


def spreads_training_default():
    """Whether a `training=True` default reaches the layers called after
    it in a call without `training` (Keras <= 3.15)."""
    return bool(_plain_call_marks() & 8)


def inference_values():
    """The recorded `training` values that `fit()` runs in inference mode.

    `(False,)` where Keras honours a recorded `training=False`, with `None`
    where it runs a recorded `training=None` so too; `()` where `fit()`
    overrides both (Keras <= 3.15).
    """
    honoured = (
        (False, honours_recorded_training()),
        (None, honours_recorded_none()),
    )
    return tuple(value for value, honours in honoured if honours)


def switched_off_by_leak(model):
    """The layers meant to train that `fit()` runs in inference mode.

    Two things do it, on a Keras that measures so (Keras 3.16): a recorded
    `training` value that `fit()` honours reaches every layer called after
    it in the same forward pass, up to the next recorded value (see
    `leaks_recorded_training`); and a call recorded with `training=None`,
    as code that forwards its own `training` argument records, runs in
    inference mode with all it holds (see `honours_recorded_none`). The
    layers inside a call recorded with `training=False` are meant to be in
    inference mode and do not count.

    Args:
        model: A Keras 3 model, or a `ModelReading` of one.

    Returns:
        The BN layers that are not frozen, and the Dropout and noise
        layers, so switched off, in the order the forward pass calls them;
        empty where the installed Keras does neither.
    """
    off = inference_values()
    if not off:
        return []
    reading = ModelReading.of(model)
    meant = {
        id(layer)
        for call in reading.calls_recorded_with((False,))
        for layer in reading.inside(call.layer)
    }
    inside_off = {
        id(layer)
        for call in reading.calls_recorded_with(off)
        for layer in reading.inside(call.layer)
    }
    leaks = leaks_recorded_training()
    training, switched_off = True, []
    for call in reading.calls:
        layer = call.layer
        if leaks and call.training is not _walk.NOT_RECORDED:
            training = not any(call.training is value for value in off)
        if (
            (not training or id(layer) in inside_off)
            and id(layer) not in meant
            and _would_train(layer)
        ):
            switched_off.append(layer)
    return switched_off


def plain_call_in_training_mode(model):
    """The BN layers that a call of `model` without `training` trains.

    On Keras <= 3.15 (as the probe measures it: see
    `spreads_training_default`), a layer whose `call` defaults to
    `training=True` (every Keras augmentation layer, such as `RandomFlip`)
    writes that default into the call context that the whole forward pass
    shares, so every layer called after it runs in training mode in a call
    that passes no `training`: `model(x)`, `tf.function(model)`, and the
    SavedModel and ONNX exporters. `predict()` and `fit()` pass `training`
    and are not affected. A BN layer so called normalizes with the
    statistics of the batch it is served.

    Args:
        model: A Keras 3 model, or a `ModelReading` of one.

    Returns:
        A list of `(batch_norm, cause)` pairs, in call order: each stock BN
        layer (or frozen_bn one that is not frozen) that such a call runs
        in training mode, and the layer whose `training=True` default (or
        recorded `training=True`) causes it. Empty where the installed
        Keras does not spread defaults.
    """
    if not spreads_training_default():
        return []
    reading = ModelReading.of(model)
    training, cause, pairs = None, None, []
    for call in reading.calls:
        # Keras 3.15 records a `training=True` default in the graph too.
        if call.training is not _walk.NOT_RECORDED:
            training = call.training
            cause = call.layer if training is True else None
        elif training is None and defaults_to_training(call.layer):
            training, cause = True, call.layer
        if (
            cause is not None
            and cause is not call.layer
            and isinstance(call.layer, keras.layers.BatchNormalization)
            and _would_train(call.layer)
        ):
            pairs.append((call.layer, cause))
    return pairs


def gap_sources(model):
    """The layers other than BN that act differently in training mode.

    Augmentation layers (and any layer whose `call` defaults to
    `training=True`), Dropout and noise layers: in a training-mode pass
    they make the outputs differ from inference mode by design.

    Args:
        model: A model, or a `ModelReading` of one.
    """
    return [
        layer
        for layer, _ in ModelReading.of(model).layers
        if not isinstance(layer, keras.layers.BatchNormalization)
        and (is_training_only(layer) or defaults_to_training(layer))
    ]


def defaults_to_training(layer):
    """Whether `layer.call` defaults to `training=True` (by design)."""
    call = getattr(layer, "call", None)
    if call is None:
        return False
    try:
        parameter = inspect.signature(call).parameters.get("training")
    except (TypeError, ValueError):  # A builtin without a signature.
        return False
    return parameter is not None and parameter.default is True


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
