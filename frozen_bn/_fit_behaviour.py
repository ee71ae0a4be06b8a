"""How `fit()` will run each BatchNormalization layer of a model.

`diagnose` and `frozen-bn inspect` label each BN layer by what `fit()` does
with it: it normalizes with its moving statistics (frozen), with those of
each batch (it trains), or, the traps, with batch statistics although the
layer is meant to be frozen, or in inference mode although it is meant to
train. The labels depend on the layer, on how the model's graph calls it,
and on what the installed Keras does with a recorded `training=False` (see
`frozen_bn._training_arg`). A `BatchNormRow` puts a layer's flags beside
its label: the row `frozen-bn inspect` prints, which `diagnose`'s
`LayerDiagnosis` extends with the layer's statistics.
"""

import dataclasses
import sys

import keras

from frozen_bn import _training_arg
from frozen_bn._reading import ModelReading
from frozen_bn._walk import tf_keras_batch_norm_classes

# How a BatchNormalization layer normalizes under `fit()`.
FROZEN = "frozen"
BATCH_STATISTICS = "batch statistics"
OVERRIDDEN = "training=False overridden by fit()"
SWITCHED_OFF = "inference mode: a recorded training=False/None reaches it"
STOCK_V1 = "batch statistics (stock V1 ignores trainable=False)"


def fit_behaviour(layer, called_with_training_false=False, leaked=False):
    """How `fit()` will run a BatchNormalization layer, in plain words.

    Args:
        layer: A stock Keras 3, tf_keras or frozen_bn BatchNormalization.
        called_with_training_false: Whether the model's recorded graph
            calls the layer (or a model holding it) with `training=False`,
            as `ModelReading.called_in_inference_mode` finds.
        leaked: Whether `fit()` runs the layer in inference mode although
            it is meant to train: a `training=False` recorded for an
            earlier call reaches it, or a call recorded with
            `training=None` holds it (Keras 3.16; see
            `frozen_bn._training_arg.switched_off_by_leak`).

    Returns:
        One of `FROZEN` (moving statistics, never updated),
        `BATCH_STATISTICS` (the layer trains: statistics of each batch),
        `OVERRIDDEN` (a trainable Keras 3 layer called with `training=False`
        that Keras <= 3.15 runs in training mode under `fit()` anyway, the
        trap of the transfer-learning guide's pattern once the base is
        unfrozen), `SWITCHED_OFF` (a layer meant to train that Keras 3.16
        runs in inference mode, because it is called after a call with
        `training=False`, or inside or after one with `training=None`: it
        never learns its statistics) or `STOCK_V1` (a
        stock tf_keras V1 layer, which normalizes with batch statistics at
        learning phase 1 although `trainable` is `False`). For tf_keras V2
        layers in TF1 graph mode, a `trainable` flag changed after the
        graph was built is not seen: the graph keeps the old one.
    """
    if hasattr(layer, "freeze_moving_stats") and (
        not layer.trainable or layer.freeze_moving_stats
    ):
        return FROZEN
    if isinstance(layer, keras.layers.Layer):  # Keras 3
        if not layer.trainable:
            return FROZEN
        if called_with_training_false:
            if _training_arg.honours_recorded_training():
                return FROZEN
            return OVERRIDDEN
        return SWITCHED_OFF if leaked else BATCH_STATISTICS
    # tf_keras honours a recorded `training=False`.
    if called_with_training_false:
        return FROZEN
    if layer.trainable:
        return BATCH_STATISTICS
    if not hasattr(layer, "freeze_moving_stats") and _is_stock_v1(layer):
        return STOCK_V1
    return FROZEN


def fit_behaviours(model):
    """`(layer, fit_behaviour(layer))` for every BN layer, in model order.

    Args:
        model: A model, or a `ModelReading` of one.
    """
    reading = ModelReading.of(model)
    trapped = {id(layer) for layer in reading.called_in_inference_mode()}
    leaked = {id(layer) for layer in switched_off_layers(reading)}
    return [
        (layer, fit_behaviour(layer, id(layer) in trapped, id(layer) in leaked))
        for layer in reading.batch_norms
    ]


def switched_off_layers(model):
    """The layers of `model` meant to train that `fit()` will not train.

    On Keras 3.16, the layers called after a call recorded with
    `training=False`, and those inside or after one recorded with
    `training=None`, run in inference mode under `fit()`: the BN layers
    that would otherwise train, and Dropout and noise layers (see
    `frozen_bn._training_arg.switched_off_by_leak`).
    Empty on other Kerases, and for tf_keras models.

    Args:
        model: A model, or a `ModelReading` of one.
    """
    reading = ModelReading.of(model)
    if not isinstance(reading.model, keras.Model):  # tf_keras: no leak.
        return []
    return _training_arg.switched_off_by_leak(reading)


def plain_call_pairs(model):
    """`_training_arg.plain_call_in_training_mode`, empty for tf_keras."""
    reading = ModelReading.of(model)
    if not isinstance(reading.model, keras.Model):
        return []
    return _training_arg.plain_call_in_training_mode(reading)


def class_label(layer):
    """A BN layer's class with its package, e.g. `"keras.BatchNormalization"`.

    Also `"frozen_bn.BatchNormalization"`, `"tf_keras.BatchNormalization"`
    and, for the stock tf_keras V1 class, `"tf_keras.BatchNormalizationV1"`.
    """
    cls = type(layer)
    package = cls.__module__.split(".")[0]
    if cls.__module__ == "frozen_bn.tf_keras":
        package = cls.__module__
    suffix = "V1" if package == "tf_keras" and _is_stock_v1(layer) else ""
    return f"{package}.{cls.__name__}{suffix}"


# The columns of a `BatchNormRow`, in the order of its `cells()`.
COLUMNS = ("layer", "class", "trainable", "freeze", "under fit()")


@dataclasses.dataclass
class BatchNormRow:
    """A BatchNormalization layer's flags and how `fit()` will run it.

    Attributes:
        name: The layer's name.
        class_name: Its class, as `class_label` writes it.
        trainable: Its `trainable` flag.
        freeze_moving_stats: Its `freeze_moving_stats` flag, or `None` for
            a stock layer.
        fit_behaviour: How `fit()` will run it (see `fit_behaviour`).
    """

    name: str
    class_name: str
    trainable: bool
    freeze_moving_stats: bool | None
    fit_behaviour: str

    @classmethod
    def of(cls, layer, behaviour, **fields):
        """The row of `layer`, `behaviour` being its `fit_behaviour`.

        Args:
            layer: A BatchNormalization layer.
            behaviour: Its `fit_behaviour` label.
            **fields: The fields a subclass adds.
        """
        return cls(
            name=layer.name,
            class_name=class_label(layer),
            trainable=bool(layer.trainable),
            freeze_moving_stats=getattr(layer, "freeze_moving_stats", None),
            fit_behaviour=behaviour,
            **fields,
        )

    def cells(self):
        """The row as text, one cell per column of `COLUMNS`."""
        freeze = self.freeze_moving_stats
        return (
            self.name,
            self.class_name,
            str(self.trainable),
            "-" if freeze is None else str(freeze),
            self.fit_behaviour,
        )


def _is_stock_v1(layer):
    if "tf_keras" not in sys.modules:
        return False
    _, stock_v1 = tf_keras_batch_norm_classes()
    return isinstance(layer, stock_v1)
