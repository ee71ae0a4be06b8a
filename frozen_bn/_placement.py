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
  (fine-tuning trains only the head). The original model may be collected
  by then; the old base, which the handle keeps alive, is not: the flags
  are recorded and compared layer by layer.

frozen_bn's BatchNormalization calls `check_fit()` in its calls; the
check runs once per fitted model and `compile()` (a new optimizer), and
warns with the fix.
"""

import warnings
import weakref

import keras

from frozen_bn import _text, _training_arg, _walk
from frozen_bn._reading import ModelReading

# Each copy that `patch_model` made: its original's name, and a weak
# reference to the original and to each layer inside it, with its
# `trainable` flag at the time.
_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Each layer inside such a copy: a weak reference to the copy.
_copy_of_layer: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# The optimizer each fitted model was last checked with.
_checked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_FIX = "frozen_bn.patch_model(model, inplace=True)"


def remember_copy(original, copy):
    """Records that `copy` is a patched copy of `original`."""
    layers = (original, *_walk.iter_layers(original))
    flags = [(weakref.ref(layer), layer.trainable) for layer in layers]
    _copies[copy] = (original.name, flags)
    for layer in _walk.iter_layers(copy):
        _copy_of_layer[layer] = weakref.ref(copy)


def check_fit(training):
    """Warns when the model being fitted is patched wrong.

    Called by frozen_bn's BatchNormalization with the `training` value of
    each call that has one: a training-mode call, or a call of a compiled
    model (on Keras 3.16 the layers of a base called with `training=False`
    see only inference-mode calls, also under `fit()`). Runs the checks
    once per model and optimizer.

    Known gap: on JAX, Keras <= 3.15 runs a training step through
    `Model.call`, outside the call context, which then names a layer of
    the model being fitted instead of the model. A layer of a copy that
    `patch_model` made names that copy, which is checked; any other model
    is not.
    """
    model = _fitted_model()
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


def _fitted_model():
    """The layer whose call started the running forward pass, or its copy.

    `None` outside a call. A layer inside a copy that `patch_model` made
    gives that copy (see the known gap of `check_fit`).
    """
    entry = _walk.outermost_call()
    if entry is None:
        return None
    copy = _copy_of_layer.get(entry, lambda: None)()
    return entry if copy is None else copy


def _stale_copy(model):
    """Why the flags set on `model`'s original do not reach it, or `""`."""
    original, flags = _copies.get(model, ("", ()))
    changed = [
        layer.name
        for layer, flag in ((ref(), flag) for ref, flag in flags)
        if layer is not None and layer.trainable != flag
    ]
    if not changed:
        return ""
    return (
        f"The `trainable` flags of layers of `{original}` "
        f"({_text.names(changed)}) changed after frozen_bn.patch_model() "
        f"returned the copy `{model.name}` that is being fitted: the copy "
        "does not see them (set `trainable` on the "
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
