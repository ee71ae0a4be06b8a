"""Catches, when `fit()` starts, a patch that misses the model being fitted.

The Keras transfer-learning guide builds its model in steps, and a user
adds `frozen_bn.patch_model` at one of them. Patching the model that is
fitted, in place, once it is built, is right on every Keras. Two other
placements leave that model wrong, and are caught here:

- The base was patched before the outer model was built: the outer graph
  then records `base(x, training=False)` on a patched base, which Keras
  <= 3.15 overrides under `fit()` once the base is unfrozen (its
  statistics move) and Keras 3.16 passes on to the head (its Dropout stops
  dropping).
- `model = patch_model(model)` returned a copy, and the guide then changes
  `trainable` on its handle to the old base, which the copy never sees
  (fine-tuning trains only the head).

frozen_bn's BatchNormalization calls `check_fit()` in its calls; the
check runs once per fitted model and `compile()` (a new optimizer), and
warns with the fix.
"""

import warnings
import weakref

import keras

from frozen_bn import _training_arg, _walk
from frozen_bn._reading import ModelReading

# Each copy that `patch_model` made: its original and the original's
# `trainable` flags at the time.
_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# The optimizer each fitted model was last checked with.
_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FIX = "frozen_bn.patch_model(model, inplace=True)"


def remember_copy(original, copy):
    """Records that `copy` is a patched copy of `original`."""
    _copies[copy] = (weakref.ref(original), _trainable_flags(original))


def check_fit(training):
    """Warns when the model being fitted is patched wrong.

    Called by frozen_bn's BatchNormalization with the `training` value of
    each call that has one: a training-mode call, or a call of a compiled
    model (on Keras 3.16 the layers of a base called with `training=False`
    see only inference-mode calls, also under `fit()`). Runs the checks
    once per model and optimizer.

    Known gap: on JAX, Keras <= 3.15 runs a training step through
    `Model.call`, outside the call context, so the model being fitted is
    not known here and nothing is checked.
    """
    model = _walk.outermost_call()
    optimizer = getattr(model, "optimizer", None)
    if not isinstance(model, keras.Model) or not (training or optimizer):
        return
    optimizer = id(optimizer)
    if _checked.get(model) == optimizer:
        return
    _checked[model] = optimizer
    for message in (_stale_copy(model), _patched_too_early(model)):
        if message:
            warnings.warn(message, UserWarning, stacklevel=2)


def _stale_copy(model):
    """Why the flags set on `model`'s original do not reach it, or `""`."""
    original, flags = _copies.get(model, (lambda: None, None))
    original = original()
    if original is None or _trainable_flags(original) == flags:
        return ""
    return (
        f"The `trainable` flags of `{original.name}`'s layers changed after "
        f"frozen_bn.patch_model() returned the copy `{model.name}` that is "
        "being fitted: the copy does not see them (set `trainable` on the "
        "copy's layers, e.g. `model.get_layer(name)`). To keep one model, "
        f"patch it in place: {_FIX}."
    )


def _patched_too_early(model):
    """Why `model`'s recorded inference-mode calls hurt its patched layers.

    Returns `""` where patching `model` in place would change nothing.
    """
    reading = ModelReading(model)
    calls = reading.calls_recorded_with((False, None))
    ours = [
        layer
        for layer in reading.batch_norms_inside(calls)
        if hasattr(layer, "freeze_moving_stats")
    ]
    if not ours:
        return ""
    problems = []
    moving = [
        layer.name
        for layer in ours
        if layer.trainable and not layer.freeze_moving_stats
    ]
    if moving and not _training_arg.honours_recorded_training():
        problems.append(f"fit() will update the statistics of {moving}")
    switched_off = _training_arg.switched_off_by_leak(reading)
    if switched_off:
        names = [layer.name for layer in switched_off]
        problems.append(f"fit() will run {names} in inference mode")
    if not problems:
        return ""
    callees = sorted({call.layer.name for call in calls})
    return (
        f"`{model.name}` calls {callees} with a recorded `training` "
        "argument that frozen_bn did not take over (it patches the graph "
        "of the model it is given: was a part patched before "
        f"`{model.name}` was built?): {'; '.join(problems)}. Patch the "
        f"model you fit, once it is built, before compile(): {_FIX}."
    )


def _trainable_flags(model):
    return tuple(layer.trainable for layer in _walk.iter_layers(model))
