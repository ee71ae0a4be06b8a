"""Fine-tuning recipes: freeze the bottom of a model, with a BN policy.

`freeze` sets the `trainable` flags of a whole model at once, nested models
included, from one choice of boundary (a layer, an index, a stage, a rule,
or a number of stages), and the `freeze_moving_stats` flags of its BN layers
from one policy; `unfreeze` puts back the flags `freeze` changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from frozen_bn import _copying, _walk
from frozen_bn._checks import check_bool, check_model, check_one_of
from frozen_bn._freeze_selection import frozen_layers
from frozen_bn._runtime import is_tf_keras_model
from frozen_bn.patching import patch_model, warn_of_traced_step

if TYPE_CHECKING:
    import keras

    from frozen_bn.architecture import Stage

# The `batch_norm` policies: for a BN layer in the trainable part, its
# `(trainable, freeze_moving_stats)`; `None` leaves the flag as it is.
POLICIES = {
    "train": (True, False),
    "freeze_statistics": (True, True),
    "freeze": (False, None),
}

# The private attribute of a model `freeze` returns: the flags before it.
_RECORD = "_frozen_bn_flags_before_freeze"


@dataclasses.dataclass(frozen=True)
class _Flags:
    """The flags of a model and of every layer inside it, in model order."""

    model_trainable: bool
    trainable: tuple
    freeze_moving_stats: tuple  # `None` where a layer has no such flag.

    @classmethod
    def of(cls, model):
        layers = list(_walk.iter_layers(model))
        return cls(
            bool(model.trainable),
            tuple(bool(layer.trainable) for layer in layers),
            tuple(
                getattr(layer, "freeze_moving_stats", None) for layer in layers
            ),
        )

    def apply(self, model):
        """Sets these flags on `model`, which has the same layers."""
        _copying.set_trainable(
            [
                (model, self.model_trainable),
                *zip(_walk.iter_layers(model), self.trainable, strict=True),
            ]
        )
        for layer, freeze in zip(
            _walk.iter_layers(model), self.freeze_moving_stats, strict=True
        ):
            if freeze is not None:
                layer.freeze_moving_stats = freeze


def freeze(
    model: keras.Model,
    up_to: str | int | Stage | Callable[[Any], bool] | None = None,
    *,
    stages: int | None = None,
    batch_norm: str = "freeze_statistics",
    inplace: bool = False,
) -> keras.Model:
    """Freezes the bottom of `model` for fine-tuning; the rest trains.

    The frozen part is given by exactly one of `up_to` and `stages`. Every
    layer in it, inside nested models too, gets `trainable=False`; every
    layer after it gets `trainable=True`. A nested model that spans the
    boundary stays `trainable=True`, with its early layers frozen. The
    result is patched (`frozen_bn.patch_model`), so that a frozen
    BatchNormalization layer normalizes with its stored statistics also
    under `fit()`, and never updates them.

    `batch_norm` chooses what the BN layers of the trainable part do:

    | `batch_norm`          | normalizes with | moving stats | gamma, beta |
    |-----------------------|-----------------|--------------|-------------|
    | `"train"`             | each batch's    | updated      | train       |
    | `"freeze_statistics"` | stored ones     | kept         | train       |
    | `"freeze"`            | stored ones     | kept         | kept        |

    `"train"` is BN as usual; `"freeze_statistics"` is mmdet's `norm_eval`
    and the TF Object Detection API's `FreezableBatchNorm`
    (`freeze_moving_stats=True`); `"freeze"` is detectron2's
    `FrozenBatchNorm` everywhere (`trainable=False`). The default,
    `"freeze_statistics"`, is the advice of the Keras transfer-learning
    guide: keep BN layers in inference mode when fine-tuning, so that the
    pretrained statistics are not destroyed, while their scale and offset
    still adapt. The batches of a fine-tuning run are often small, and their
    statistics noisy; and it is what the guide's `base(x, training=False)`
    was meant to do.

    `freeze` is idempotent: freezing a model it returned the same way
    changes nothing. `unfreeze` gives back the flags it changed.

    Args:
        model: A built `keras.Model` (or tf_keras model).
        up_to: The last layer of the frozen part: a layer name (any layer
            inside `model`, nested ones too: everything up to it in model
            order is frozen, and the layer itself with all its layers); an
            index into `model.layers`, the order `model.summary()` lists
            (negative indexes count from the end); a `frozen_bn.Stage` of
            `frozen_bn.stages(model)` (up to its last layer); or a callable
            `layer -> bool`, which freezes the layers (with all their
            layers) for which it returns `True`.
        stages: The number of stages of `frozen_bn.stages(model)` to
            freeze, as detectron2's `FREEZE_AT` and mmdet's
            `frozen_stages`: `0` freezes nothing.
        batch_norm: The policy for BN layers in the trainable part:
            `"train"`, `"freeze_statistics"` (default) or `"freeze"` (see
            above). BN layers in the frozen part always keep their stored
            statistics.
        inplace: If `False` (default), freezes a patched copy and leaves
            `model` untouched. If `True`, patches and freezes `model`
            itself (in TF1 graph mode only a model that is patched already,
            whose flags live in its graph).

    Returns:
        The frozen model. It remembers the flags it had before, for
        `unfreeze`, in a private attribute of the model object: saving and
        loading the model, or copying it, does not keep it.

    Example:

    >>> model = keras.applications.ResNet50(
    ...     weights=None, input_shape=(64, 64, 3)
    ... )
    >>> model = frozen_bn.freeze(model, stages=2)  # conv1 and conv2_x
    >>> print(frozen_bn.freeze_summary(model).to_text())
    >>> model = frozen_bn.unfreeze(model)  # every layer trainable again
    """
    check_model(model)
    policy = check_one_of(batch_norm, "batch_norm", tuple(POLICIES))
    inplace = check_bool(inplace, "inplace")
    frozen = frozen_layers(model, up_to, stages)
    before = getattr(model, _RECORD, None)
    target = _patched(model, inplace)
    before = before or _Flags.of(target)
    layers = list(_walk.iter_layers(target))
    batch_norms = {id(layer) for layer in _walk.batch_norm_layers(target)}
    target.trainable = True
    for layer, is_frozen in zip(layers, frozen, strict=True):
        layer.trainable = not is_frozen  # Parents first: see `iter_layers`.
        if id(layer) in batch_norms and not is_frozen:
            trainable, freeze_moving_stats = POLICIES[policy]
            layer.trainable = trainable
            if freeze_moving_stats is not None and hasattr(
                layer, "freeze_moving_stats"
            ):
                layer.freeze_moving_stats = freeze_moving_stats
    setattr(target, _RECORD, before)
    return target


def unfreeze(model: keras.Model, *, inplace: bool = False) -> keras.Model:
    """Gives back the flags that `freeze` changed.

    Every `trainable` and `freeze_moving_stats` flag of the model and of
    the layers inside it becomes bitwise what it was before `freeze` (after
    patching, for a model that was not patched); the layers stay frozen_bn
    layers.

    Args:
        model: A model returned by `frozen_bn.freeze`, in this process: the
            flags before `freeze` do not survive saving or copying.
        inplace: If `False` (default), returns a copy and leaves `model`
            untouched. If `True`, changes `model` itself.

    Returns:
        The unfrozen model.

    Example:

    >>> frozen = frozen_bn.freeze(model, up_to="conv4_block6_out")
    >>> model = frozen_bn.unfreeze(frozen)
    """
    check_model(model)
    inplace = check_bool(inplace, "inplace")
    before = getattr(model, _RECORD, None)
    if before is None:
        raise ValueError(
            f"Expected `model` to be a model returned by `frozen_bn.freeze`. "
            f"Received: model={model.name!r}, which `freeze` did not produce "
            "(or which was saved, loaded or copied since: the flags before "
            "`freeze` are kept on the model object only)."
        )
    target = _patched(model, inplace)
    before.apply(target)
    if target is model:
        delattr(model, _RECORD)
    return target


def _patched(model, inplace):
    # In TF1 graph mode a patched model's flags live in its graph, so a
    # model that needs no new class needs no new graph either.
    if inplace and is_tf_keras_model(model) and _is_patched(model):
        warn_of_traced_step(model)
        return model
    return patch_model(model, inplace=inplace)


def _is_patched(model):
    return all(
        hasattr(layer, "freeze_moving_stats")
        for layer in _walk.batch_norm_layers(model)
    )
