"""Swapping frozen_bn's BatchNormalization into loaded models, and back."""

from __future__ import annotations

import reprlib
import warnings

import keras
import numpy as np

from frozen_bn import _flavors, _placement, _walk
from frozen_bn._checks import (
    check_bool,
    check_layer_choice,
    check_model,
    check_rule_result,
)
from frozen_bn._reading import ModelReading
from frozen_bn._runtime import runs_on_tensorflow


def _freeze_rule(freeze_moving_stats, batch_norms):
    """Turns the `freeze_moving_stats` argument into `(layer, auto) -> bool`.

    `auto` tells whether the model's graph calls the layer with
    `training=False`.
    """
    value = freeze_moving_stats
    if value is None:
        return lambda layer, auto: (
            auto or getattr(layer, "freeze_moving_stats", False)
        )
    if isinstance(value, bool | np.bool_):
        return lambda layer, auto: bool(value)
    if callable(value):
        return lambda layer, auto: check_rule_result(
            value(layer), "freeze_moving_stats", layer
        )
    if isinstance(value, (list, tuple, set, frozenset)) and all(
        isinstance(name, str) for name in value
    ):
        check_layer_choice(
            value,
            "freeze_moving_stats",
            batch_norms,
            "BatchNormalization layers of `model`",
        )
        return lambda layer, auto: layer.name in value
    raise TypeError(
        "Expected `freeze_moving_stats` to be None, a bool, a callable "
        "`layer -> bool` or a list of layer names. "
        f"Received: freeze_moving_stats={reprlib.repr(value)}"
    )


def _check_inplace(flavor, inplace):
    """Returns `inplace` as a bool, if this Keras can change models in place."""
    inplace = check_bool(inplace, "inplace")
    if inplace and flavor.static_graph:
        raise ValueError(
            "`inplace=True` cannot change a tf_keras model in TF1 graph "
            "mode: its graph was built with the layers it had and keeps "
            "their behaviour. Pass `inplace=False` (the default) to get a "
            "model with a new graph. Received: inplace=True"
        )
    return inplace


def _warn(message):
    warnings.warn(message, stacklevel=3)


def patch_model(
    model: keras.Model,
    *,
    freeze_moving_stats: bool | None = None,
    inplace: bool = False,
) -> keras.Model:
    """Makes every BatchNormalization layer of `model` a frozen_bn one.

    Each stock `BatchNormalization` layer becomes a
    `frozen_bn.BatchNormalization` with the same config, name, dtype policy,
    `trainable` flag and variables (gamma, beta and the moving statistics,
    bitwise). The layers are found wherever they are: Sequential and
    Functional models, nested models at any depth, shared layers (which stay
    shared) and layers tracked by subclassed models. Subclasses of the stock
    layer that are not frozen_bn's are left alone, with a warning.

    The patched layers use their moving statistics whenever they are frozen,
    also under `fit()`. That includes the Keras transfer-learning guide's
    pattern `base_model.trainable = True; y = base_model(x, training=False)`:
    Keras 3 lets `fit()` override the recorded `training=False`, and the
    moving statistics of `base_model` drift; after patching they do not.

    Where a graph calls a layer or nested model with `training=False` and
    every BN layer it holds is now frozen, the recorded argument is
    dropped: the frozen layers do its work, and Keras 3.16 would otherwise
    pass it on to every layer called after it (the head's Dropout and BN
    layers would stop training). A recorded `training=None` is dropped
    wherever the installed Keras runs it in inference mode under `fit()`
    (Keras 3.16): it means "as the caller says", which a missing argument
    means on every Keras.

    The Keras transfer-learning guide's code needs one line: patch the
    model you fit, once it is built, in place:
    `frozen_bn.patch_model(model, inplace=True)`. The guide's later
    `base_model.trainable = True` then reaches the patched layers. A base
    patched before the outer model was built, or a copy whose original's
    `trainable` flags change afterwards, is reported with a warning when
    `fit()` starts.

    On Keras <= 3.15 a layer whose `call` defaults to `training=True` (an
    augmentation layer) puts every later layer in training mode in a call
    without `training` (`model(x)`, `model.export`): patching warns with
    the BN layers that such a call trains (see
    `frozen_bn._training_arg.plain_call_in_training_mode`) but keeps the
    graph as it is, since `fit()` and `predict()` are right; serve such a
    model with `training=False`, or export it with `frozen_bn.export`.

    Patching is idempotent: patching a patched model changes nothing.

    Args:
        model: A built `keras.Model` (or tf_keras model, when `tf_keras` is
            imported).
        freeze_moving_stats: Which patched layers get
            `freeze_moving_stats=True` (statistics fixed, gamma/beta still
            trainable when `trainable`). `None` (default): the layers that
            the model's graph calls with `training=False`, directly or
            inside a nested model so called; layers that already had it
            keep it. `True`/`False`: every patched layer. A callable
            `layer -> bool`, or a list of layer names, chooses per layer;
            the callable sees each layer as it is before patching, and is
            called for every layer before any changes, so that one that
            raises (or returns no bool) leaves `model` as it was.
        inplace: A bool. If `False` (default), returns a patched copy and
            leaves `model` untouched. If `True`, patches `model` itself and
            returns it (not for tf_keras models in TF1 graph mode, whose
            graph cannot change).

    Returns:
        The patched model. A model patched in place after `fit()` needs
        `compile()` before it trains again where `fit()` traced its
        training step (TensorFlow, tf_keras, JAX with `jit_compile`; a
        warning says so): the traced step keeps the stock layers'
        behaviour. A model compiled but never fitted needs nothing.

    Example:

    >>> base = keras.applications.MobileNetV2(weights=None, include_top=False)
    >>> base.trainable = False
    >>> inputs = keras.Input((224, 224, 3))
    >>> x = base(inputs, training=False)
    >>> x = keras.layers.GlobalAveragePooling2D()(x)
    >>> model = keras.Model(inputs, keras.layers.Dense(1)(x))
    >>> frozen_bn.patch_model(model, inplace=True)  # frozen under fit()
    """
    check_model(model)
    flavor = _flavors.flavor_of(model)
    inplace = _check_inplace(flavor, inplace)
    batch_norms = _walk.batch_norm_layers(model)
    rule = _freeze_rule(freeze_moving_stats, batch_norms)
    target = model if inplace else flavor.copy_model(model)
    reading = ModelReading(target)
    called_in_inference = {
        id(layer) for layer in reading.called_in_inference_mode()
    }
    ours = tuple(flavor.patched_classes.values())
    foreign = []
    # 1. Every decision first, so that a rule that fails changes nothing.
    decisions = []
    for layer in reading.batch_norms:
        patched_class = flavor.patched_classes.get(type(layer))
        if patched_class is None and not isinstance(layer, ours):
            foreign.append(f"{layer.name} ({type(layer).__name__})")
            continue
        auto = id(layer) in called_in_inference
        decisions.append((layer, patched_class, rule(layer, auto)))
    # 2. The changes, which cannot fail.
    for layer, patched_class, freeze in decisions:
        if patched_class is not None:
            patched_class._adopt(layer)
        layer.freeze_moving_stats = freeze
    target = flavor.finish_patch(target)
    if not inplace and flavor is _flavors.KERAS_3:
        _placement.remember_copy(model, target)
    if not batch_norms:
        _warn(f"`model` ({model.name!r}) has no BatchNormalization layer.")
    if foreign:
        _warn(
            "These layers subclass BatchNormalization but are not frozen_bn "
            f"layers; they were left as they are: {', '.join(foreign)}"
        )
    warn_of_traced_step(target)
    return target


def unpatch_model(model: keras.Model, *, inplace: bool = False) -> keras.Model:
    """Turns frozen_bn's BatchNormalization layers back into stock ones.

    The inverse of `patch_model`: every frozen_bn layer becomes the stock
    Keras layer with the same config (less `freeze_moving_stats`), name,
    `trainable` flag and variables, so that a fine-tuned model can be saved
    and deployed where frozen_bn is not installed.
    `unpatch_model(patch_model(m))` predicts bitwise like `m`.

    Args:
        model: A built `keras.Model` (or tf_keras model).
        inplace: If `False` (default), returns an unpatched copy and leaves
            `model` untouched. If `True`, unpatches `model` itself.

    Returns:
        The unpatched model.
    """
    check_model(model)
    flavor = _flavors.flavor_of(model)
    inplace = _check_inplace(flavor, inplace)
    target = flavor.unpatch(model if inplace else flavor.copy_model(model))
    warn_of_traced_step(target)
    return target


def warn_of_traced_step(model):
    """Warns if `fit()` would train `model` with a step traced before now.

    `fit()` builds a training step once and keeps it as
    `model.train_function` until `compile()` drops it. Measured on Keras
    3.15 and tf_keras 2.21: TensorFlow and tf_keras trace it (unless
    `run_eagerly`), and the traced step keeps the classes and flags its
    layers had when it was traced; so does JAX's, jitted with `jit_compile`.
    A step that runs eagerly, and torch's (`torch.compile` compiles it
    again when a layer's class changes), runs the layers as they are now.
    A model that was compiled but never fitted has no step yet.
    """
    step = getattr(model, "train_function", None)
    if step is None or getattr(model, "run_eagerly", False):
        return
    jitted = keras.backend.backend() == "jax" and model.jit_compile
    if runs_on_tensorflow(model) or jitted:
        warnings.warn(
            f"`model` ({model.name!r}) was fitted: its next `fit()` would "
            "reuse the training step it traced then, which keeps the "
            "classes and flags its layers had. Call `compile()` on it "
            "before training it again.",
            stacklevel=3,
        )
