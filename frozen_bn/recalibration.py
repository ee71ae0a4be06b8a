"""Re-estimates BatchNormalization statistics on new data (AdaBN/PreciseBN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from frozen_bn import _moving_stats, _probe
from frozen_bn._checks import check_layer_choice, check_model
from frozen_bn._walk import batch_norm_layers

if TYPE_CHECKING:
    import keras


def recalibrate(
    model: keras.Model,
    data: Any,
    *,
    steps: int | None = None,
    layers: Sequence[keras.layers.Layer | str] | None = None,
    batch_size: int = 32,
    verbose: int | str = "auto",
) -> keras.Model:
    """Sets BN moving statistics to the exact statistics of new data.

    Transfer learning assumes that the new data looks, to every
    BatchNormalization layer, like the data its moving statistics were
    recorded on; nothing guarantees it. `recalibrate` makes it true: one pass
    over `data` measures the inputs of the chosen layers, and each layer's
    `moving_mean` and `moving_variance` are set to the mean and population
    variance of its inputs over the whole of `data`. This is AdaBN
    (re-estimating the statistics on the target domain) computed the
    PreciseBN way: per batch, the mean and population variance (around
    the mean, as `keras.ops.moments` defines them); across batches, the
    exact combination weighted by batch size (in float64), not an
    exponential moving average, so an uneven last batch counts for what it
    holds.

    During the pass the model runs in training mode, normalizing as `fit()`
    would, with one deliberate exception: every chosen layer normalizes with
    the statistics of the current batch, even if it is frozen. A chosen
    layer's moving statistics are about to be replaced by the population
    statistics of its inputs, and the batch statistics are the per-batch
    estimate of exactly those; normalizing with the old, stale statistics
    would feed the layers above inputs they will never see once the new
    statistics are in place. This is how PreciseBN estimates population
    statistics: all layers in training mode in one pass, rather than a pass
    per layer with the layers below already recalibrated; Wu and Johnson
    show that the two agree closely for reasonable batch sizes. Layers that
    are not chosen normalize as `fit()` would: batch statistics if they
    train, moving statistics if frozen. Dropout and other training-mode
    layers are active, as in `fit()`.

    Nothing else changes: the pass writes no moving statistic (whatever the
    layers write while in training mode is put back, random seeds
    included), only the final assignment does; every other weight stays
    bitwise the same, and `trainable` and `freeze_moving_stats` flags are
    restored. Frozen layers are recalibrated like any other and stay frozen.

    **Several workers.** When the model is trained by several processes
    (`tf.distribute.MultiWorkerMirroredStrategy` over several tasks, or JAX
    with `jax.process_count() > 1`), call `recalibrate` on every worker with
    that worker's shard of `data` (at least one batch each): every worker
    then writes the statistics of the union of all shards, the same on
    each, at the cost of one all-gather of all the layers' statistics.

    Args:
        model: A built `keras.Model` (or tf_keras Model).
        data: A numpy array (or a list/dict of them for a multi-input
            model), an `(x, y)` or `(x, y, sample_weight)` tuple of those, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, or any iterable
            (e.g. a generator) of batches: frozen_bn's data contract
            (docs/data.md). A list of arrays is the inputs of a multi-input
            model, as in `fit()`; several batches come as an iterator. Only
            the model inputs are used. Every batch is checked before the
            model sees it: numeric, finite, and fitting the model's inputs.
            A keras-hub task with a `preprocessor` preprocesses each batch
            first, as in `fit()`.
        steps: If given, the pass stops after this many batches.
        layers: The BatchNormalization layers to recalibrate, as layers or
            layer names; `None` (default) for every BN layer in `model`,
            those of nested models and inside custom layers (e.g. the
            blocks of keras-hub's MobileNet) included.
        batch_size: Batch size used to slice arrays; ignored for forms that
            are already batched. Batch statistics are noisier for small
            batches, which matters for the layers above.
        verbose: `"auto"`, 0, 1 or 2, as in `fit()`: `"auto"` and 1 show a
            progress bar, 2 one line at the end, 0 nothing.

    Returns:
        `model`, with its moving statistics set in place.

    Raises:
        TypeError: `data` is of no accepted form, or a batch is not numeric.
        ValueError: a batch holds NaN or infinity (the error names its
            batch and position), does not fit the model's inputs, or the
            measured statistics are not finite. Then no statistic changed.

    Reference:
    - [Li et al., 2016](https://arxiv.org/abs/1603.04779) (AdaBN).
    - [Wu and Johnson, 2021](https://arxiv.org/abs/2105.07576) (PreciseBN,
      "Rethinking 'Batch' in BatchNorm").

    Example:

    >>> base = keras.applications.ResNet50(weights="imagenet")
    >>> frozen_bn.recalibrate(base, new_images, steps=100)
    """
    check_model(model)
    chosen = chosen_layers(model, layers)
    statistics = recalibration_probe(model, chosen).run(
        data, batch_size=batch_size, steps=steps, verbose=verbose
    )
    _moving_stats.write(
        chosen, [(measured.mean, measured.variance) for measured in statistics]
    )
    return model


def recalibration_probe(model, layers):
    """The pass that measures `layers` as `recalibrate` does: a `Probe`."""
    return _probe.Probe(model, layers, training=True, batch_statistics=layers)


def chosen_layers(model, layers):
    """The BN layers of `model` that `layers` names; all of them for `None`.

    Raises:
        ValueError: `layers` names something that is not a BN layer of
            `model`, or a layer with batch renormalization.
    """
    found = batch_norm_layers(model)
    if layers is None:
        chosen = found
    else:
        chosen = check_layer_choice(
            layers, "layers", found, "BatchNormalization layers of `model`"
        )
    for layer in chosen:
        if getattr(layer, "renorm", False):
            raise ValueError(
                "`recalibrate` does not support batch renormalization: "
                f"layer {layer.name!r} has renorm=True, whose extra "
                "statistics would no longer match. Pass `layers` without it."
            )
    return list({id(layer): layer for layer in chosen}.values())
