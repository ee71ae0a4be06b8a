"""What `frozen_bn.callbacks.ModeGapMonitor` does, for either Keras.

A mixin: listed before `keras.callbacks.Callback` (Keras 3) or
`tf_keras.callbacks.Callback`, it gives either class the same behaviour:
`diagnose`'s comparison of training and inference mode
(`frozen_bn._mode_gap`) on a fixed sample at the end of every epoch,
written into the epoch's logs.
"""

from __future__ import annotations

import warnings
from typing import Any

from frozen_bn import _data, _diagnosis_data, _mode_gap
from frozen_bn._checks import (
    check_positive_int,
    check_positive_number,
    check_verbose,
)
from frozen_bn._epoch_line import EpochLine

GAP = "mode_gap"
TRAINING_ACCURACY = "training_mode_accuracy"
INFERENCE_ACCURACY = "inference_mode_accuracy"


class ModeGapMonitorCallback:
    """Logs the gap between training and inference mode every epoch."""

    def __init__(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int = 32,
        max_gap: float | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__()
        self.x = x
        _data.arrays_of(x, "x")
        self.y = y
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_gap = check_positive_number(
            max_gap, "max_gap", allow_none=True
        )
        self.verbose = check_verbose(verbose)
        self._line = EpochLine("ModeGapMonitor")
        self._labels = None
        self._comparison = None

    def on_train_begin(self, logs=None):
        samples = _diagnosis_data.check_inputs(
            self.model, self.x, batch_size=self.batch_size
        )
        if self.y is not None:
            self._labels = _diagnosis_data.check_labels(self.y, samples)
            _diagnosis_data.check_targets(self.model, self._labels)
        self._comparison = _mode_gap.ModeComparison(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._line.print()

    def on_train_end(self, logs=None):
        self._line.print()

    def on_epoch_end(self, epoch, logs=None):
        _, gap = self._comparison.run(
            self.x,
            self._labels,
            name="x",
            batch_size=self.batch_size,
            verbose=0,
        )
        logs = {} if logs is None else logs
        logs[GAP] = gap.output_gap
        if gap.task is not None:
            logs[TRAINING_ACCURACY] = gap.training["accuracy"]
            logs[INFERENCE_ACCURACY] = gap.inference["accuracy"]
        if gap.non_finite_outputs:
            # NaN compares false with any `max_gap`: say it, and stop.
            reason = (
                f"epoch {epoch + 1}: the model's outputs on `x` hold "
                f"{gap.non_finite_outputs} NaN or infinite values (the "
                "weights diverged; `x` is finite)"
            )
            warnings.warn(reason + ".", RuntimeWarning, stacklevel=2)
            self._stop(reason)
        elif self.max_gap is not None and gap.output_gap >= self.max_gap:
            self._stop(
                f"epoch {epoch + 1}: training and inference mode are "
                f"{gap.output_gap:.3g} apart (max_gap={self.max_gap:g})"
            )

    def _stop(self, reason):
        if self.max_gap is None:
            return
        self.model.stop_training = True
        if self.verbose:
            self._line.hold(f"{reason}: stopping training.")
