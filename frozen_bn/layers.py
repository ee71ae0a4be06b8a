"""The Keras 3 BatchNormalization layer that respects being frozen."""

from typing import Any

import keras

from frozen_bn import _placement, _replicas
from frozen_bn._freeze_argument import FreezeMovingStatsArgument


@keras.saving.register_keras_serializable(package="frozen_bn")
class BatchNormalization(
    FreezeMovingStatsArgument, keras.layers.BatchNormalization
):
    """Batch normalization that uses its stored statistics whenever frozen.

    A drop-in replacement for `keras.layers.BatchNormalization`: it takes the
    same arguments with the same defaults and computes bitwise the same
    outputs, except in the cases below where the stock layer would normalize
    with mini-batch statistics although the layer is meant to be frozen.

    The layer normalizes with the statistics of the current mini-batch, and
    updates its moving statistics, only when all three hold:

    | `training` | `trainable` | `freeze_moving_stats` | statistics | moving |
    |------------|-------------|-----------------------|------------|--------|
    | `True`     | `True`      | `False`               | mini-batch | update |
    | `True`     | `True`      | `True`                | moving     | kept   |
    | `True`     | `False`     | any                   | moving     | kept   |
    | `False`    | any         | any                   | moving     | kept   |

    In every case but the first, the output is
    `gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta`, and
    the moving statistics are never written. In the first case the moving
    statistics follow
    `moving_stat = moving_stat * momentum + batch_stat * (1 - momentum)`.

    Args:
        freeze_moving_stats: Boolean. If `True`, the layer always normalizes
            with its moving statistics and never updates them, while `gamma`
            and `beta` stay trainable (when `trainable` is `True`). This is
            the "norm_eval" mode of detection codebases: fine-tune the affine
            parameters, keep the pretrained statistics. Can be changed after
            construction; like `trainable`, a change takes effect in `fit()`
            after the model is compiled again. Defaults to `False`.
        *args, **kwargs: The arguments of
            `keras.layers.BatchNormalization`, with its defaults (`axis`,
            `momentum`, `epsilon`, `center`, `scale`, initializers,
            regularizers, constraints, `renorm*`, `synchronized`), and base
            layer keyword arguments (e.g. `name`, `dtype`, `trainable`).

    Call arguments:
        inputs: Input tensor (of any rank).
        training: Python boolean. `True` asks for training mode, which the
            layer honours only when it is not frozen (see the table above).
        mask: Binary tensor broadcastable to `inputs` with one dimension
            less, marking the positions that count for mini-batch statistics.

    Reference:
    - [Ioffe and Szegedy, 2015](https://arxiv.org/abs/1502.03167).

    **Why frozen must mean inference mode.** When a pretrained network is
    fine-tuned with part of it frozen, the layers above a frozen BN learn on
    its training-mode outputs and are later served its inference-mode
    outputs. If the frozen BN normalizes with mini-batch statistics while
    training, the two differ in scale whenever the new data's statistics
    differ from the stored ones, and accuracy collapses at inference (for a
    binary task: about 50% accuracy while the ROC AUC stays near 1). This
    layer makes "frozen" mean "stored statistics" in every mode, and
    `freeze_moving_stats` lets the statistics stay frozen while `gamma` and
    `beta` train, which `trainable` alone cannot express.

    **Multiple devices.** Under a `tf.distribute` strategy, a layer that
    updates its moving statistics then sets each replica's copy to the mean
    of the copies, so that they stay equal (Keras 3's stock layer lets each
    replica keep its own); with `synchronized=True` the batch statistics,
    hence the copies, agree already. A frozen layer never computes batch
    statistics, so it makes no cross-replica call, synchronized or not.
    Under `keras.distribution.DataParallel` (JAX) the batch statistics are
    those of the global batch.

    Example:

    >>> layer = frozen_bn.BatchNormalization(freeze_moving_stats=True)
    >>> x = np.random.rand(8, 4).astype("float32")
    >>> np.allclose(layer(x, training=True), layer(x, training=False))
    True
    """

    @classmethod
    def _adopt(cls, layer):
        """Turns a stock `layer` into this class in place, keeping its state.

        Swapping the class keeps every variable, graph node and reference to
        the layer as they are, so shared layers stay shared and models of
        any kind (Functional, Sequential, nested, subclassed) need no
        rewiring. Used by `frozen_bn.patch_model`.
        """
        layer.__class__ = cls
        layer.freeze_moving_stats = False

    def _release(self):
        """Turns this layer back into the stock class in place."""
        del self._freeze_moving_stats
        self.__class__ = keras.layers.BatchNormalization

    def call(
        self, inputs: Any, training: bool | None = None, mask: Any = None
    ) -> Any:
        if training is not None:  # As fit() and predict() call it.
            _placement.check_fit(training)
        if self.freeze_moving_stats:
            training = False
        # The stock layer already reads `training and self.trainable`.
        outputs = super().call(inputs, training=training, mask=mask)
        if training and self.trainable and not self.synchronized:
            # Keras 3 lets each tf.distribute replica keep its own moving
            # statistics; a synchronized layer's copies agree already.
            _replicas.average_over_replicas(self)
        return outputs
