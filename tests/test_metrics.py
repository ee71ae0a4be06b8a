"""Tests for `frozen_bn._metrics`, against sklearn's and Keras's metrics."""

import keras
import numpy as np
import pytest

from frozen_bn import _metrics


def keras_metric(metric, labels, outputs):
    metric.update_state(labels, outputs)
    return float(metric.result())


def keras_loss(loss, labels, outputs, **kwargs):
    """The mean of a Keras loss function's per-sample values."""
    return np.mean(keras.ops.convert_to_numpy(loss(labels, outputs, **kwargs)))


def binary_data(seed, count=64):
    """0/1 labels and probabilities, a quarter of them exactly 0.5.

    Fractions of 64 samples are exact in float32, as Keras counts them.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    p = rng.uniform(0.0, 1.0, count).astype("float32")
    p[::4] = 0.5
    return labels, p


# ROC AUC


def test_roc_auc_matches_hand_computed_value_with_ties():
    # Positives 0.35, 0.8, 0.4 against negatives 0.1, 0.4: wins 1 + 2 + 1.5
    # (the tie with 0.4 counts half) over 3 * 2 pairs.
    scores = [0.1, 0.4, 0.35, 0.8, 0.4]
    assert _metrics.roc_auc([0, 0, 1, 1, 1], scores) == 0.75


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_sklearn_on_scores_with_ties(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(0.0, 1.0, 300) + labels, 1)
    assert len(np.unique(scores)) < len(scores) / 2  # many ties

    np.testing.assert_allclose(
        _metrics.roc_auc(labels, scores),
        sklearn_metrics.roc_auc_score(labels, scores),
        rtol=1e-12,
    )


def test_roc_auc_of_one_class_is_nan():
    assert np.isnan(_metrics.roc_auc([1, 1, 1], [0.2, 0.5, 0.9]))


# Binary


def test_an_output_of_exactly_one_half_is_negative():
    metrics = _metrics.binary_metrics([0, 1], [0.5, 0.5])
    accuracy = keras.metrics.BinaryAccuracy()

    assert metrics["positive_rate"] == 0.0
    assert metrics["accuracy"] == 0.5
    assert keras_metric(accuracy, [[0], [1]], [[0.5], [0.5]]) == 0.5


@pytest.mark.parametrize("seed", range(3))
def test_binary_accuracy_and_positive_rate_match_keras(seed):
    labels, p = binary_data(seed)

    metrics = _metrics.binary_metrics(labels, p)

    accuracy = keras.metrics.BinaryAccuracy()
    assert metrics["accuracy"] == keras_metric(accuracy, labels[:, None], p)
    # Accuracy against all-positive labels is the rate of positives.
    positives = keras.metrics.BinaryAccuracy()
    ones = np.ones((len(p), 1))
    assert metrics["positive_rate"] == keras_metric(positives, ones, p)
    bce = keras_loss(
        keras.losses.binary_crossentropy, labels[:, None], p[:, None]
    )
    np.testing.assert_allclose(metrics["loss"], bce, rtol=1e-5)


def test_binary_logits_are_read_as_logits():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 64)
    logits = rng.normal(labels - 0.5, 2.0).astype("float32")

    metrics = _metrics.binary_metrics(labels, logits)

    accuracy = keras.metrics.BinaryAccuracy(threshold=0.0)
    assert metrics["accuracy"] == keras_metric(
        accuracy, labels[:, None], logits[:, None]
    )
    bce = keras_loss(
        keras.losses.binary_crossentropy,
        labels[:, None],
        logits[:, None],
        from_logits=True,
    )
    np.testing.assert_allclose(metrics["loss"], bce, rtol=1e-5)
    np.testing.assert_allclose(
        metrics["auc"],
        sklearn_metrics.roc_auc_score(labels, logits),
        rtol=1e-12,
    )


# Multiclass


@pytest.mark.parametrize("from_logits", [True, False])
def test_multiclass_metrics_match_keras(from_logits):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 64)
    outputs = rng.normal(0.0, 2.0, (64, 5)).astype("float32")
    if not from_logits:
        outputs = keras.ops.convert_to_numpy(keras.ops.softmax(outputs))

    metrics = _metrics.multiclass_metrics(labels, outputs)

    accuracy = keras.metrics.SparseCategoricalAccuracy()
    assert metrics["accuracy"] == keras_metric(accuracy, labels, outputs)
    loss = keras_loss(
        keras.losses.sparse_categorical_crossentropy,
        labels,
        outputs,
        from_logits=from_logits,
    )
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)


def test_predicted_classes_threshold_one_output_and_argmax_several():
    one = np.array([[0.2], [0.5], [0.51], [0.9]])
    several = np.array([[0.1, 0.7, 0.2], [3.0, -1.0, 2.0]])

    assert _metrics.predicted_classes(one).tolist() == [0, 0, 1, 1]
    assert _metrics.predicted_classes(several).tolist() == [1, 0]
