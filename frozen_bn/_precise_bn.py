"""What `frozen_bn.callbacks.PreciseBN` does, for either Keras's callbacks.

A mixin: listed before `keras.callbacks.Callback` (Keras 3) or
`tf_keras.callbacks.Callback`, it gives either class the same behaviour.

The callback lends the model precise statistics for what happens between
two stretches of training (validation, checkpoints, the end of `fit()`) and
gives training its own statistics back when it resumes. Precise statistics
depend on the weights they were measured with, and callbacks such as
`keras.callbacks.SwapEMAWeights` swap the weights in and out around those
same events; so the statistics are measured for the weights the model holds
when they are lent, and kept for as long as the weights stay bitwise the
same (a fingerprint of the trainable variables), not recomputed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from frozen_bn import _moving_stats, _variable_values
from frozen_bn._checks import check_positive_int, check_verbose
from frozen_bn._data import adapter_for, check_arrays
from frozen_bn._epoch_line import EpochLine
from frozen_bn._fit_behaviour import (
    BATCH_STATISTICS,
    OVERRIDDEN,
    fit_behaviours,
)
from frozen_bn._runtime import builds_static_graphs, is_tf_keras_model
from frozen_bn.recalibration import chosen_layers, recalibration_probe

# The layers whose moving statistics `fit()` updates: an exponential moving
# average that lags behind the weights.
_UPDATED_BY_FIT = (BATCH_STATISTICS, OVERRIDDEN)


class PreciseBNCallback:
    """Recomputes BN statistics before validation, checkpoints and the end."""

    def __init__(
        self,
        data: Any,
        *,
        steps: int | None = None,
        layers: Sequence[Any] | None = None,
        batch_size: int = 32,
        freq: int = 1,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.steps = check_positive_int(steps, "steps", allow_none=True)
        # A form of the data contract, that ends or is read `steps` at most.
        adapter_for(data, "data", steps=self.steps)
        if hasattr(data, "__next__"):
            raise TypeError(
                "Expected `data` to be readable more than once: arrays, an "
                "`(x, y)` tuple, a `tf.data.Dataset` or a "
                "`keras.utils.PyDataset`. Received: data of type "
                f"{type(data).__name__}, an iterator that one pass would "
                "exhaust"
            )
        self.data = data
        self.layers = layers
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.freq = check_positive_int(freq, "freq")
        self.verbose = check_verbose(verbose)
        self._line = EpochLine("PreciseBN")
        self._forget()

    def on_train_begin(self, logs=None):
        if is_tf_keras_model(self.model) and builds_static_graphs():
            raise ValueError(
                "`PreciseBN` measures statistics with an eager pass, which "
                "tf_keras does not run in TF1 graph mode. Use "
                "`frozen_bn.recalibrate` after training in eager mode."
            )
        if self.layers is None:
            self._layers = [
                layer
                for layer, behaviour in fit_behaviours(self.model)
                if behaviour in _UPDATED_BY_FIT
            ]
        else:
            self._layers = chosen_layers(self.model, self.layers)
        self._probe = recalibration_probe(self.model, self._layers)
        check_arrays(
            self.model, self.data, batch_size=self.batch_size, steps=self.steps
        )

    def on_epoch_begin(self, epoch, logs=None):
        self._line.print()
        self._epoch = epoch
        self._give_back()

    def on_test_begin(self, logs=None):
        if self._probe is not None and self._due():
            self._lend()

    def on_test_end(self, logs=None):
        self._give_back()

    def on_epoch_end(self, epoch, logs=None):
        if self._due():
            self._lend()

    def on_train_end(self, logs=None):
        # The model that `fit()` returns keeps statistics of its weights
        # (the averaged ones, with `use_ema=True`).
        self._lend()
        self._line.print()
        self._forget()

    def _forget(self):
        self._probe = None
        self._layers = []
        self._epoch = 0
        self._training_statistics = None
        self._measured = (None, None)  # (weights fingerprint, statistics)

    def _due(self):
        return (self._epoch + 1) % self.freq == 0

    def _lend(self):
        """Sets precise statistics for the weights the model holds now."""
        if not self._layers:
            return
        statistics = _moving_stats.variables(self._layers)
        if self._training_statistics is None:
            self._training_statistics = _variable_values.snapshot(statistics)
        fingerprint = _variable_values.fingerprint(
            self.model.trainable_variables
        )
        if self._measured[0] == fingerprint:
            _variable_values.assign(statistics, self._measured[1])
            return
        start = time.perf_counter()
        measured = self._probe.run(
            self.data, steps=self.steps, batch_size=self.batch_size, verbose=0
        )
        _moving_stats.write(
            self._layers, [(m.mean, m.variance) for m in measured]
        )
        # Kept as the variables hold them: lending them again is one assign.
        self._measured = (fingerprint, _variable_values.snapshot(statistics))
        if self.verbose:
            self._line.hold(
                f"epoch {self._epoch + 1}: statistics of "
                f"{len(self._layers)} layers recomputed in "
                f"{time.perf_counter() - start:.1f}s"
            )

    def _give_back(self):
        """Puts back the statistics training had when they were lent."""
        if self._training_statistics is not None:
            _variable_values.assign(
                _moving_stats.variables(self._layers),
                self._training_statistics,
            )
            self._training_statistics = None
