"""What `frozen_bn.callbacks.FrozenStatisticsGuard` does, for either Keras.

A mixin: listed before `keras.callbacks.Callback` (Keras 3) or
`tf_keras.callbacks.Callback`, it gives either class the same behaviour.

A BatchNormalization layer meant to be frozen (`trainable=False`,
`freeze_moving_stats=True`, or called with `training=False`) can still go
wrong under `fit()` in two ways: its moving statistics move (Keras <= 3.15
overrides a recorded `training=False`), or it normalizes with batch
statistics without moving them (a stock tf_keras V1 layer; the damage is
the normalization itself, so no stored value shows it). The guard reports
the second kind when training starts (with the layers meant to train that
`fit()` will run in inference mode, and those a call without `training`
runs in training mode), from how `fit()` will run each layer
(`frozen_bn._fit_behaviour`), and the first whenever it compares the
stored statistics with those it recorded at the start.
"""

from __future__ import annotations

import warnings

from frozen_bn import _moving_stats
from frozen_bn._checks import check_one_of, check_positive_int
from frozen_bn._fit_behaviour import (
    FROZEN,
    OVERRIDDEN,
    STOCK_V1,
    fit_behaviours,
    plain_call_pairs,
    switched_off_layers,
)
from frozen_bn._reading import ModelReading
from frozen_bn._verdict import drift

# The labels of layers meant to be frozen; the last two are the traps.
_MEANT_FROZEN = (FROZEN, OVERRIDDEN, STOCK_V1)
_ACTIONS = ("warn", "raise")
_PATCH_HINT = (
    " frozen_bn.patch_model(model) before compiling keeps them frozen."
)


class FrozenStatisticsError(RuntimeError):
    """A frozen BatchNormalization layer does not keep its statistics."""


class FrozenStatisticsGuardCallback:
    """Checks that frozen BN layers keep their statistics during `fit()`."""

    def __init__(
        self, *, on_change: str = "warn", freq: str | int = "epoch"
    ) -> None:
        super().__init__()
        check_one_of(on_change, "on_change", _ACTIONS)
        if not (isinstance(freq, str) and freq == "epoch"):
            # A number of batches; any other string is not "epoch".
            freq = check_positive_int(
                check_one_of(freq, "freq", ("epoch",))
                if isinstance(freq, str)
                else freq,
                "freq",
            )
        self.on_change = on_change
        self.freq = freq
        self._layers: list = []
        self._recorded: list = []

    def on_train_begin(self, logs=None):
        reading = ModelReading(self.model)
        behaviours = [
            (layer, behaviour)
            for layer, behaviour in fit_behaviours(reading)
            if behaviour in _MEANT_FROZEN
        ]
        self._layers = [layer for layer, _ in behaviours]
        self._recorded = _moving_stats.read(self._layers)
        traps = [(layer, b) for layer, b in behaviours if b != FROZEN]
        if traps:
            self._report(
                "These BatchNormalization layers are meant to be frozen, but "
                "fit() will normalize them with batch statistics: "
                + "; ".join(f"{layer.name} ({b})" for layer, b in traps)
                + "."
                + _PATCH_HINT
            )
        switched_off = switched_off_layers(reading)
        if switched_off:
            _advise(
                "These layers are meant to train, but fit() will run them "
                "in inference mode, because a call was recorded with "
                "training=False or training=None (Keras 3.16): "
                + ", ".join(layer.name for layer in switched_off)
                + ". frozen_bn.patch_model(model, inplace=True) before "
                "compiling drops such an argument where frozen layers do "
                "its work."
            )
        spread = plain_call_pairs(reading)
        if spread:
            _advise(
                "A call of this model without training (model(x), an "
                "exported model) runs these BatchNormalization layers in "
                "training mode, because a layer before them defaults to "
                "training=True (Keras <= 3.15): "
                + ", ".join(f"{bn.name} (after {c.name})" for bn, c in spread)
                + ". fit() is not affected; serve the model with "
                "training=False or export it with frozen_bn.export()."
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.freq != "epoch" and (batch + 1) % self.freq == 0:
            # The JAX trainer holds the variables' values while it trains.
            getattr(self.model, "jax_state_sync", lambda: None)()
            self._check()

    def on_epoch_end(self, epoch, logs=None):
        if self.freq == "epoch":
            self._check()

    def moved_layers(self):
        """The watched layers whose statistics changed, with how far.

        Returns:
            A list of `(layer, mean_shift, variance_ratio)`, as `diagnose`
            measures drift (`frozen_bn._verdict.drift`), against the
            statistics the layer had when training started.
        """
        current = _moving_stats.read(self._layers)
        moved = []
        for layer, now, then in zip(
            self._layers, current, self._recorded, strict=True
        ):
            if any((a != b).any() for a, b in zip(now, then, strict=True)):
                moved.append((layer, *drift(now, then, layer.epsilon)))
        return moved

    def _check(self):
        moved = self.moved_layers()
        if moved:
            self._report(
                f"The moving statistics of {len(moved)} frozen "
                "BatchNormalization layer(s) changed during fit(): "
                + "; ".join(
                    f"{layer.name} (mean shift {shift:.3g}, variance ratio "
                    f"{ratio:.3g})"
                    for layer, shift, ratio in moved
                )
                + "."
                + (_PATCH_HINT if any(map(_is_stock, moved)) else "")
            )

    def _report(self, message):
        if self.on_change == "raise":
            raise FrozenStatisticsError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def _advise(message):
    """Warns about a mode that is wrong but keeps frozen statistics.

    Always a `UserWarning`: `on_change` is about frozen statistics.
    """
    warnings.warn(message, UserWarning, stacklevel=3)


def _is_stock(moved):
    layer = moved[0]
    return not hasattr(layer, "freeze_moving_stats")
