"""How far a model's training-mode outputs are from its inference-mode ones.

`diagnose` runs the model on the same data in both modes; this compares
the two outputs: the output gap, and for class scores how often the
predicted class changes.
"""

import keras
import numpy as np

from frozen_bn._metrics import predicted_classes


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
    predicted = map(predicted_classes, (inference, training))
    return float(np.mean(np.not_equal(*predicted)))
