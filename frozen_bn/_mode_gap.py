"""How far a model's training-mode outputs are from its inference-mode ones.

The check of the 2018 "Keras BN layer is broken" experiment: run the model
on the same data in both modes and compare. `ModeComparison` holds one
compiled pass that runs each batch in both modes (so a callback that
compares every epoch compiles once, and a compiler computes what the modes
share once, such as a frozen bottom) and returns a `ModeGap`: the output
gap, for class scores how often the predicted class changes, and with
labels the metrics in each mode.
`diagnose` and `frozen_bn.callbacks.ModeGapMonitor` both measure with it.
"""

import dataclasses

import keras
import numpy as np

from frozen_bn import _diagnosis_data, _metrics, _probe, _workers


@dataclasses.dataclass
class ModeGap:
    """The two modes compared on the same data.

    Attributes:
        samples: The number of samples compared (of every worker, when
            several each run their shard).
        output_gap: Mean absolute difference between the training-mode and
            inference-mode outputs over the standard deviation of all their
            values; 0 when they agree.
        prediction_disagreement: Fraction of samples whose predicted class
            differs between the modes, or `None` when the outputs are not
            one vector of scores per sample (e.g. a feature map).
        task: `"binary"` or `"multiclass"` with labels, else `None`.
        chance: Accuracy of always predicting the most frequent label.
        inference: Metrics in inference mode (`loss`, `accuracy`, and for
            a binary task `auc` and `positive_rate`), or `None`.
        training: The same metrics in training mode.
        non_finite_outputs: How many output values are NaN or infinite, in
            both modes together; then `output_gap` is NaN, and the cause is
            the model's weights, not its statistics (the inputs are checked
            finite before the pass).
    """

    samples: int
    output_gap: float
    prediction_disagreement: float | None
    non_finite_outputs: int = 0
    task: str | None = None
    chance: float | None = None
    inference: dict | None = None
    training: dict | None = None


class ModeComparison:
    """A pass of a model over data in both modes.

    Args:
        model: A built Keras 3 or tf_keras model.
        layers: BN layers whose inputs the inference-mode pass measures
            too (see `frozen_bn._probe.Probe`).
    """

    def __init__(self, model, layers=()):
        self._model = model
        self._passes = _probe.Probe(model, layers, training=(False, True))

    def run(self, x, labels=None, *, name="x", batch_size=32, verbose="auto"):
        """Runs the model over `x` in both modes; writes no variable.

        Args:
            x: The inputs: a numpy array, or a list/dict of them.
            name: The argument `x` was passed as, for error messages.
            labels: Labels checked by `_diagnosis_data.check_labels`, or
                `None`.
            batch_size: Batch size of the pass.
            verbose: As in `fit()`: a progress bar of the pass.

        Returns:
            A pair: the `InputStatistics` of the measured layers, and the
            `ModeGap`.
        """
        statistics, (inference, training) = self._passes.run(
            x,
            name=name,
            batch_size=batch_size,
            verbose=verbose,
            return_outputs=True,
        )
        if labels is not None:  # In the order of every worker's outputs.
            labels = _workers.gather_rows(self._model, labels)
        return statistics, compare(inference, training, labels)


def compare(inference, training, labels=None):
    """The `ModeGap` of a model's outputs in both modes.

    Args:
        inference, training: The outputs in each mode, with the structure
            of the model's outputs (numpy).
        labels: Labels (see `_diagnosis_data.targets`), or `None`.
    """
    scores = are_scores(inference)
    inference, training = flat(inference), flat(training)
    gap = ModeGap(
        samples=len(inference),
        output_gap=output_gap(inference, training),
        prediction_disagreement=(
            prediction_disagreement(inference, training) if scores else None
        ),
        non_finite_outputs=int(
            np.count_nonzero(~np.isfinite(inference))
            + np.count_nonzero(~np.isfinite(training))
        ),
    )
    if labels is not None:
        gap.task, target = _diagnosis_data.targets(labels, inference.shape[1])
        metrics = (
            _metrics.binary_metrics
            if gap.task == "binary"
            else _metrics.multiclass_metrics
        )
        gap.chance = float(np.bincount(target).max() / len(target))
        gap.inference = metrics(target, inference)
        gap.training = metrics(target, training)
    return gap


def are_scores(outputs):
    """Whether `outputs` is one vector (or scalar) per sample: classes."""
    return all(np.ndim(output) <= 2 for output in keras.tree.flatten(outputs))


def flat(outputs):
    """All outputs as one `(samples, units)` float64 array."""
    parts = [np.asarray(o, "float64") for o in keras.tree.flatten(outputs)]
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)


def output_gap(inference, training):
    """Mean absolute difference over the standard deviation of all values.

    Args:
        inference, training: The `flat` outputs in each mode.

    Returns:
        0 when the outputs agree.
    """
    gap = float(np.mean(np.abs(training - inference)))
    spread = float(np.std(np.concatenate([inference, training])))
    return 0.0 if gap == 0.0 else gap / spread


def prediction_disagreement(inference, training):
    """The fraction of samples whose predicted class differs between modes.

    Args:
        inference, training: The `flat` class scores in each mode.
    """
    predicted = map(_metrics.predicted_classes, (inference, training))
    return float(np.mean(np.not_equal(*predicted)))
