"""Keras 3 callbacks that keep BatchNormalization statistics right in `fit()`.

- `PreciseBN`: statistics recomputed for the current weights before
  validation, checkpoints and the end of training.
- `FrozenStatisticsGuard`: frozen layers checked for keeping their
  statistics.
- `ModeGapMonitor`: the gap between training and inference mode as an epoch
  metric.

Their tf_keras twins live in `frozen_bn.tf_keras`.
"""

import keras

from frozen_bn._gap_monitor import ModeGapMonitorCallback
from frozen_bn._precise_bn import PreciseBNCallback
from frozen_bn._statistics_guard import (
    FrozenStatisticsError,
    FrozenStatisticsGuardCallback,
)

__all__ = [
    "FrozenStatisticsError",
    "FrozenStatisticsGuard",
    "ModeGapMonitor",
    "PreciseBN",
]


class PreciseBN(PreciseBNCallback, keras.callbacks.Callback):
    """Recomputes BN statistics for the current weights inside `fit()`.

    The moving statistics that `fit()` keeps are an exponential moving
    average of batch statistics measured with older weights; after weight
    averaging (`use_ema=True`) they belong to none of the weights
    evaluated. Before each validation run, at the end of each epoch (where
    `keras.callbacks.ModelCheckpoint` saves) and at the end of training,
    this callback sets the moving statistics of the chosen layers to the
    exact population statistics of their inputs on `data`, measured with
    the weights the model holds at that moment, as `frozen_bn.recalibrate`
    measures them (PreciseBN). When training resumes, it gets back its own
    statistics, bitwise: the callback changes what is evaluated and saved,
    never the training itself. The model `fit()` returns keeps precise
    statistics for its final weights.

    Statistics are measured once per set of weights: again only when the
    trainable weights changed (training, or weights swapped in), and with
    a pass compiled once per `fit()`. Frozen layers keep their statistics
    unless `layers` names them.

    Order matters, as in Keras: the callback sees the model as the
    callbacks before it leave it. Put it after
    `keras.callbacks.SwapEMAWeights`, so that it measures the averaged
    weights that will be evaluated and saved, and before
    `keras.callbacks.ModelCheckpoint` and `keras.callbacks.EarlyStopping`,
    so that they save and restore precise statistics.

    Args:
        data: The data to measure on, in any form `fit()` accepts that can
            be read more than once: a numpy array (or a list/dict of them),
            an `(x, y)` tuple of those, a `tf.data.Dataset` or a
            `keras.utils.PyDataset` (frozen_bn's data contract,
            docs/data.md; every batch is checked finite and against the
            model's inputs). Only the inputs are used; a keras-hub
            task's `preprocessor` is applied as in `fit()`. A few hundred
            batches are plenty (detectron2 uses 200).
        steps: If given, each pass reads at most this many batches.
        layers: The BN layers to recompute, as layers or names. Defaults to
            every layer whose moving statistics `fit()` updates (layers
            that train, and on Keras <= 3.15 those whose recorded
            `training=False` `fit()` overrides).
        batch_size: Batch size for array data. Each layer normalizes with
            the statistics of its batch during the pass, as in training.
        freq: Recompute every `freq` epochs (validation and checkpoints of
            other epochs see the training statistics). Defaults to 1.
        verbose: 0 (default: silent) or 1: one line, `PreciseBN: ...`,
            for each epoch that recomputed statistics, printed below
            Keras's own line for that epoch.

    Reference:
    - [Wu and Johnson, 2021](https://arxiv.org/abs/2105.07576) (PreciseBN,
      "Rethinking 'Batch' in BatchNorm").

    Example:

    >>> model.compile(keras.optimizers.SGD(0.01, use_ema=True), "mse")
    >>> model.fit(
    ...     x_train,
    ...     y_train,
    ...     validation_data=(x_val, y_val),
    ...     callbacks=[
    ...         keras.callbacks.SwapEMAWeights(swap_on_epoch=True),
    ...         frozen_bn.callbacks.PreciseBN(x_train[:2048]),
    ...         keras.callbacks.ModelCheckpoint("best.keras"),
    ...     ],
    ... )
    """


class FrozenStatisticsGuard(
    FrozenStatisticsGuardCallback, keras.callbacks.Callback
):
    """Checks that frozen BN layers keep their statistics during `fit()`.

    Watches every BatchNormalization layer meant to be frozen: with
    `trainable=False`, with `freeze_moving_stats=True`, or called in the
    model's graph with `training=False`. When training starts it reports
    those that `fit()` will normalize with batch statistics anyway (the
    guide pattern on Keras <= 3.15; stock tf_keras V1 layers), and at every
    check it compares their moving statistics with those they had when
    training started, bitwise, and reports each that changed with how far
    (standardized mean shift and variance ratio, as `frozen_bn.diagnose`
    measures drift). frozen_bn's own frozen layers never trigger it.

    When training starts it also warns (a `UserWarning`, whatever
    `on_change` says: no frozen statistics move) about layers meant to
    train that `fit()` will run in inference mode (Keras 3.16, after a
    recorded `training=False`, or with a recorded `training=None`), and
    about BN layers that a call of the model without `training` (an
    exported model) runs in training mode, with the layer whose
    `training=True` default causes it (Keras <= 3.15).

    Args:
        on_change: `"warn"` (a `RuntimeWarning`, training goes on) or
            `"raise"` (a `FrozenStatisticsError`, which stops `fit()`).
            Defaults to `"warn"`.
        freq: `"epoch"` to check at the end of each epoch, or an integer to
            check every that many batches. Defaults to `"epoch"`.

    Example:

    >>> guard = frozen_bn.callbacks.FrozenStatisticsGuard(on_change="raise")
    >>> model.fit(x, y, callbacks=[guard])
    """


class ModeGapMonitor(ModeGapMonitorCallback, keras.callbacks.Callback):
    """Logs how far training mode is from inference mode, every epoch.

    The check of the 2018 "Keras BN layer is broken" experiment as an epoch
    metric: at the end of each epoch the model runs on `x` in inference
    mode and in training mode (BN layers normalizing as `fit()` has them
    normalize), and the comparison is written into the epoch's logs, where
    `History`, `keras.callbacks.CSVLogger` and
    `keras.callbacks.TensorBoard` find it (put those after this callback):

    - `mode_gap`: the mean absolute difference between the two outputs
      over their standard deviation, as `frozen_bn.diagnose` reports it
      (`output_gap`); 0 when the modes agree;
    - with labels, `training_mode_accuracy` and `inference_mode_accuracy`.
      Frozen BN layers that normalize with batch statistics show as high
      training-mode and chance-level inference-mode accuracy.

    Cost: one pass over `x` an epoch, compiled once per `fit()`, whose step
    runs each batch in both modes: TensorFlow and JAX share the work the
    two modes have in common (a frozen bottom), torch runs both in full.
    Dropout is active in the training-mode call, as under `fit()`.

    Args:
        x: A sample of inputs: a numpy array, or a list/dict of them,
            finite and fitting the model's inputs (checked when training
            starts; see docs/data.md).
        y: Optional labels of `x`, as for `frozen_bn.diagnose`.
        batch_size: Batch size of the pass. Defaults to 32.
        max_gap: If given, training stops at the end of the first epoch
            whose `mode_gap` is at least this (`diagnose` flags 0.5), or
            whose outputs on `x` are NaN or infinite (`mode_gap` is then
            NaN, which no threshold catches; a `RuntimeWarning` names it
            with or without `max_gap`).
        verbose: 0 (default) or 1: whether to say why training stopped,
            in one line below Keras's own line for that epoch.

    Example:

    >>> monitor = frozen_bn.callbacks.ModeGapMonitor(x_val[:512], y_val[:512])
    >>> history = model.fit(x, y, callbacks=[monitor])
    >>> history.history["inference_mode_accuracy"]
    """
