"""Classification metrics of a model's outputs, in numpy, as Keras counts them.

`diagnose` and the demo both score binary and multiclass outputs; this is
their one implementation. Outputs may be probabilities or logits: they are
read as probabilities when they look like ones (in `[0, 1]`, and rows that
sum to 1 for several outputs). A binary prediction is positive when its
probability is above 0.5, as in Keras's `binary_accuracy`.
"""

import math

import numpy as np

THRESHOLD = 0.5
# Probabilities are clipped away from 0 and 1 before the log loss.
_EPSILON = 1e-7


def probabilities(outputs):
    """Probabilities from `(samples, units)` outputs that may be logits."""
    outputs = np.asarray(outputs, "float64")
    if outputs.shape[1] == 1:
        if outputs.min() >= 0.0 and outputs.max() <= 1.0:
            return outputs
        return 1.0 / (1.0 + np.exp(-outputs))
    if outputs.min() >= 0.0 and np.allclose(outputs.sum(axis=1), 1, atol=1e-3):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def predicted_classes(outputs):
    """The predicted class per sample: above the threshold, or the argmax."""
    outputs = np.asarray(outputs, "float64")
    if outputs.shape[1] == 1:
        return (probabilities(outputs)[:, 0] > THRESHOLD).astype(int)
    return np.argmax(outputs, axis=1)


def roc_auc(labels, scores):
    """ROC AUC by the rank formula, ties counted as half (average ranks).

    Returns NaN when `labels` hold a single class.
    """
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, "float64").ravel()
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    _, groups, counts = np.unique(
        scores, return_inverse=True, return_counts=True
    )
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[groups.ravel()]
    wins = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(wins / (positives * negatives))


def binary_metrics(labels, outputs):
    """`loss`, `accuracy`, `auc` and `positive_rate` of one output per sample.

    Args:
        labels: 0/1 labels, one per sample.
        outputs: Probabilities or logits, shape `(samples,)` or
            `(samples, 1)`.
    """
    labels = np.asarray(labels, "float64").ravel()
    p = probabilities(np.reshape(outputs, (len(labels), 1)))[:, 0]
    clipped = np.clip(p, _EPSILON, 1.0 - _EPSILON)
    loss = -np.mean(
        labels * np.log(clipped) + (1 - labels) * np.log(1 - clipped)
    )
    positive = p > THRESHOLD
    return {
        "loss": float(loss),
        "accuracy": float(np.mean(positive == (labels == 1))),
        "auc": roc_auc(labels, p),
        "positive_rate": float(np.mean(positive)),
    }


def multiclass_metrics(labels, outputs):
    """`loss` and `accuracy` of class scores, for class-index `labels`."""
    labels = np.asarray(labels).astype(int).ravel()
    p = np.clip(probabilities(outputs), _EPSILON, 1.0 - _EPSILON)
    chosen = p[np.arange(len(labels)), labels]
    return {
        "loss": float(-np.mean(np.log(chosen))),
        "accuracy": float(np.mean(predicted_classes(outputs) == labels)),
    }
