"""The tf_keras (Keras 2) BatchNormalization layers that respect being frozen.

Import it as `import frozen_bn.tf_keras` (then use
`frozen_bn.tf_keras.BatchNormalization`) or as
`from frozen_bn.tf_keras import BatchNormalization`: the shorter
`from frozen_bn import tf_keras` would hide the real `tf_keras` module behind
this one in your namespace.

The callbacks of `frozen_bn.callbacks` have twins here, for tf_keras's
`fit()`: `FrozenStatisticsGuard` (eager and TF1 graph mode), `PreciseBN` and
`ModeGapMonitor` (eager only: their passes run eagerly or in a
`tf.function`).

Importing this module imports TensorFlow and tf_keras; `import frozen_bn`
does not import it. `frozen_bn.patch_model` swaps these classes into tf_keras
models.
"""

import tensorflow as tf
import tf_keras

# A private tf_keras import: `track_variable` is how a variable that is no
# layer's weight gets initialized by the tf_keras session.
from tf_keras.src.backend import track_variable as _track_variable

from frozen_bn._freeze_argument import FreezeMovingStatsArgument
from frozen_bn._gap_monitor import ModeGapMonitorCallback
from frozen_bn._precise_bn import PreciseBNCallback
from frozen_bn._runtime import builds_static_graphs
from frozen_bn._statistics_guard import FrozenStatisticsGuardCallback
from frozen_bn._walk import tf_keras_batch_norm_classes

__all__ = [
    "BatchNormalization",
    "BatchNormalizationV1",
    "FrozenStatisticsGuard",
    "ModeGapMonitor",
    "PreciseBN",
]

_StockV2, _StockV1 = tf_keras_batch_norm_classes()


class _FrozenBatchNormalizationMixin(FreezeMovingStatsArgument):
    """What makes a tf_keras BatchNormalization class respect being frozen.

    A layer is frozen when `trainable` is `False` or `freeze_moving_stats`
    is `True`; a frozen layer normalizes with its moving statistics and
    leaves them untouched, whatever the learning phase.

    In eager mode and inside `tf.function` the flags are read when the layer
    is called, as Keras does for `trainable`: a change takes effect once
    `fit()` traces its step again, after `compile()`. In TF1 graph mode a
    layer is called once, when the model is built, so the flags live in the
    graph instead: a boolean variable that their setters assign. It is not
    one of the layer's weights (saved files and `get_weights()` are those of
    the stock layer); it is initialized by the tf_keras session and by
    `tf.compat.v1.local_variables_initializer()`. The functions of a
    SavedModel are traces, so they keep the flags as they were when saved;
    `tf_keras.models.load_model` builds the layers again, flag included.
    """

    # tf_keras sets `_trainable` directly (`Model.trainable = False` does),
    # so the graph flag follows that attribute rather than `trainable`.
    @property
    def _trainable(self):
        return self._trainable_value

    @_trainable.setter
    def _trainable(self, value):
        self._trainable_value = value
        self._sync_frozen_flags()

    def _freeze_moving_stats_changed(self):
        self._sync_frozen_flags()

    @property
    def _frozen(self):
        return not self._trainable or getattr(
            self, "_freeze_moving_stats", False
        )

    @classmethod
    def _adopt(cls, layer):
        """Turns a stock `layer` into this class in place, keeping its state.

        Used by `frozen_bn.patch_model`. A layer that TF1 graph mode already
        called keeps its graph: the model must be built again.
        """
        trainable = layer.__dict__.pop("_trainable")
        layer.__class__ = cls
        layer._trainable = trainable
        layer.freeze_moving_stats = False

    def _release(self):
        """Turns this layer back into the stock class in place."""
        trainable = self._trainable
        for name in ("_trainable_value", "_freeze_moving_stats"):
            self.__dict__.pop(name)
        self.__dict__.pop("_frozen_flags", None)
        self.__class__ = self._stock_class
        self._trainable = trainable

    def _frozen_flag(self):
        """The graph variable holding `self._frozen` in the current graph."""
        with tf.init_scope():
            graph = tf.compat.v1.get_default_graph()
            flags = self.__dict__.get("_frozen_flags", {})
            if graph not in flags:
                flags[graph] = tf.compat.v1.Variable(
                    self._frozen,
                    trainable=False,
                    name=f"{self.name}_frozen",
                    collections=[tf.compat.v1.GraphKeys.LOCAL_VARIABLES],
                )
                _track_variable(flags[graph])
                # Bypasses tf_keras's tracking: not a weight of the layer.
                object.__setattr__(self, "_frozen_flags", flags)
            return flags[graph]

    def _sync_frozen_flags(self):
        for flag in self.__dict__.get("_frozen_flags", {}).values():
            tf_keras.backend.set_value(flag, self._frozen)

    def _get_training_value(self, training=None):
        # Eager calls and function traces (`fit()` traces again after
        # `compile()`; so does saving) read the flags as they are now.
        if tf.inside_function() or not builds_static_graphs():
            if self._frozen:
                return False
            return super()._get_training_value(training)
        if training is None:
            training = tf_keras.backend.learning_phase()
        if isinstance(training, (bool, int)) and not training:
            return training
        not_frozen = tf.logical_not(self._frozen_flag())
        if isinstance(training, (bool, int)):
            return not_frozen
        return tf.logical_and(tf.cast(training, tf.bool), not_frozen)


@tf_keras.saving.register_keras_serializable(package="frozen_bn")
class BatchNormalization(_FrozenBatchNormalizationMixin, _StockV2):  # type: ignore[valid-type,misc]
    """tf_keras batch normalization that uses its stored statistics when frozen.

    A drop-in replacement for `tf_keras.layers.BatchNormalization` with the
    contract of `frozen_bn.BatchNormalization`: the layer normalizes with
    the statistics of the mini-batch, and updates its moving statistics,
    only when the learning phase is 1 (`training=True`, `fit()`), `trainable`
    is `True` and `freeze_moving_stats` is `False`. Otherwise it computes
    `gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta` and
    leaves the moving statistics bitwise unchanged.

    It holds in eager mode and in TF1 graph mode
    (`tf.compat.v1.disable_v2_behavior()`), with a dynamic learning phase
    (`fit()`, `tf_keras.backend.function`) or a static one
    (`tf_keras.backend.set_learning_phase`), on the fused and non-fused
    paths, with `virtual_batch_size` and with `renorm`. Changing `trainable`
    (on the layer or on a model containing it) or `freeze_moving_stats`
    after the model is built takes effect in `fit()` after `compile()`,
    without building the model again, also in graph mode.

    Args:
        freeze_moving_stats: Boolean. If `True`, the layer always normalizes
            with its moving statistics and never updates them, while `gamma`
            and `beta` stay trainable (when `trainable` is `True`).
            Defaults to `False`.
        *args, **kwargs: The arguments of
            `tf_keras.layers.BatchNormalization`, with its defaults.

    Example:

    >>> import frozen_bn.tf_keras
    >>> layer = frozen_bn.tf_keras.BatchNormalization(trainable=False)
    >>> x = np.random.rand(8, 4).astype("float32")
    >>> np.allclose(layer(x, training=True), layer(x, training=False))
    True
    """

    _stock_class = _StockV2


@tf_keras.saving.register_keras_serializable(package="frozen_bn")
class BatchNormalizationV1(_FrozenBatchNormalizationMixin, _StockV1):  # type: ignore[valid-type,misc]
    """The frozen_bn replacement of tf_keras's V1 BatchNormalization.

    `tf.compat.v1` code and models loaded in TF1 graph mode use the V1
    class, which normalizes with mini-batch statistics at learning phase 1
    even when `trainable` is `False`. This class keeps the V1 defaults
    (`fused=True` where possible) and has the contract of
    `frozen_bn.tf_keras.BatchNormalization`.
    """

    _stock_class = _StockV1


class PreciseBN(PreciseBNCallback, tf_keras.callbacks.Callback):
    """`frozen_bn.callbacks.PreciseBN` for tf_keras models (eager mode).

    Same arguments and behaviour; in TF1 graph mode `fit()` raises a
    `ValueError` when training starts.
    """


class FrozenStatisticsGuard(
    FrozenStatisticsGuardCallback, tf_keras.callbacks.Callback
):
    """`frozen_bn.callbacks.FrozenStatisticsGuard` for tf_keras models.

    Same arguments and behaviour, in eager and TF1 graph mode. A stock V1
    layer with `trainable=False` normalizes with batch statistics at
    learning phase 1 without moving its statistics: the guard reports it
    when training starts.
    """


class ModeGapMonitor(ModeGapMonitorCallback, tf_keras.callbacks.Callback):
    """`frozen_bn.callbacks.ModeGapMonitor` for tf_keras models (eager)."""
