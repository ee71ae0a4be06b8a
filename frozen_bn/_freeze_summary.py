"""The stage table of a model: what is frozen, what trains, what BN does."""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import TYPE_CHECKING

from frozen_bn import _walk
from frozen_bn._checks import check_model
from frozen_bn._fit_behaviour import fit_behaviours
from frozen_bn._text import format_table
from frozen_bn.architecture import stages

if TYPE_CHECKING:
    import keras

# The columns of `FreezeSummary.to_text()`.
COLUMNS = ("stage", "layers", "trainable", "frozen", "BN under fit()")


@dataclasses.dataclass(frozen=True)
class StageRow:
    """One stage of a model and how `fit()` will train it.

    Attributes:
        name: The stage's name (see `frozen_bn.stages`).
        layers: How many layers of `model.layers` it has.
        trainable_parameters: How many scalars `fit()` trains in it.
        frozen_parameters: How many it does not (frozen weights, and BN
            statistics, which no gradient changes).
        batch_norm: How `fit()` runs its BN layers, e.g.
            `"2 frozen, 1 batch statistics"`; `""` where it has none.
    """

    name: str
    layers: int
    trainable_parameters: int
    frozen_parameters: int
    batch_norm: str

    def cells(self):
        """The row as text, one cell per column of `COLUMNS`."""
        return (
            self.name,
            str(self.layers),
            f"{self.trainable_parameters:,}",
            f"{self.frozen_parameters:,}",
            self.batch_norm or "-",
        )


@dataclasses.dataclass(frozen=True)
class FreezeSummary:
    """What `fit()` will train in each stage of a model.

    Attributes:
        rows: One `StageRow` per stage, in model order.
    """

    rows: tuple

    def to_text(self) -> str:
        """The rows as an aligned text table."""
        cells = [row.cells() for row in self.rows]
        return "\n".join(format_table(COLUMNS, cells, numeric={1, 2, 3}))


def freeze_summary(model: keras.Model) -> FreezeSummary:
    """What `fit()` will train in each stage of `model`.

    One row per stage of `frozen_bn.stages(model)`: its layers, its
    trainable and frozen parameters, and how `fit()` will run its
    BatchNormalization layers (see `frozen_bn.diagnose` for the labels).

    Args:
        model: A built `keras.Model` (or tf_keras model).

    Returns:
        A `FreezeSummary`; print its `to_text()`.

    Example:

    >>> model = frozen_bn.freeze(model, stages=2)
    >>> print(frozen_bn.freeze_summary(model).to_text())
    """
    check_model(model)
    behaviours = {id(layer): label for layer, label in fit_behaviours(model)}
    rows = []
    for stage in stages(model):
        layers = [model.get_layer(name) for name in stage.layers]
        labels = collections.Counter(
            behaviours[id(layer)]
            for top in layers
            for layer in (top, *_walk.iter_layers(top))
            if id(layer) in behaviours
        )
        rows.append(
            StageRow(
                stage.name,
                len(layers),
                _size(layer.trainable_weights for layer in layers),
                _size(layer.non_trainable_weights for layer in layers),
                ", ".join(f"{n} {label}" for label, n in labels.items()),
            )
        )
    return FreezeSummary(tuple(rows))


def _size(weight_lists):
    """How many scalars the weights hold, each shared weight counted once."""
    unique = {id(w): w for weights in weight_lists for w in weights}
    return sum(math.prod(w.shape) for w in unique.values())
