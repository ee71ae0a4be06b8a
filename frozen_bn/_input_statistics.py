"""Statistics of BatchNormalization inputs over many batches, exactly.

A probe's pass records, per batch and per call of each measured layer, the
count, mean and population variance of the layer's inputs (`_moments`).
`Totals` combines them, weighted by their counts, with the parallel update
of Chan, Golub and LeVeque (1979) in float64: no exponential moving
average, so an uneven last batch counts for what it holds. The features of
every layer lie side by side in one vector, so that a batch costs one
update however many layers are measured (a layer called several times per
batch, such as a shared one, adds one update per extra call).
"""

import dataclasses
import math

import numpy as np


@dataclasses.dataclass
class InputStatistics:
    """Count, mean and population variance of one layer's inputs.

    All three are float64 numpy arrays shaped like the layer's moving mean
    (the count is per feature because a mask can differ between features).
    """

    count: np.ndarray
    mean: np.ndarray
    variance: np.ndarray

    def merge(self, count, mean, variance):
        """Adds a batch's moments, weighted by its count (Chan et al.)."""
        total = self.count + count
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(total > 0, count / total, 0.0)
        delta = mean - self.mean
        self.mean = self.mean + delta * weight
        self.variance = (
            self.variance * (1.0 - weight)
            + variance * weight
            + delta**2 * weight * (1.0 - weight)
        )
        self.count = total


class Totals:
    """The running `InputStatistics` of several layers, merged as one.

    Args:
        shapes: The shape of each layer's moving mean, in layer order.
    """

    def __init__(self, shapes):
        self._shapes = [tuple(shape) for shape in shapes]
        self._bounds = np.cumsum([0, *map(math.prod, self._shapes)])
        self._running = InputStatistics(*self._zeros())

    def add(self, records):
        """Merges one batch's moments.

        Args:
            records: For each layer that was called, by its index (an int
                or its string), the `(count, mean, variance)` of each call
                as numpy values; a scalar count counts for every feature.
        """
        for call in range(max(map(len, records.values()), default=0)):
            # Layers called fewer times add nothing (a count of 0) here.
            row = self._zeros()
            for index, calls in records.items():
                if call < len(calls):
                    start, stop = self._bounds[int(index) : int(index) + 2]
                    for field, value in zip(row, calls[call], strict=True):
                        field[start:stop] = np.ravel(value)
            self._running.merge(*row)

    def result(self):
        """The `InputStatistics` of each layer so far, in layer order."""
        return [
            InputStatistics(
                *(
                    getattr(self._running, field)[start:stop].reshape(shape)
                    for field in ("count", "mean", "variance")
                )
            )
            for shape, start, stop in zip(
                self._shapes, self._bounds[:-1], self._bounds[1:], strict=True
            )
        ]

    def _zeros(self):
        return np.zeros((3, self._bounds[-1]))
