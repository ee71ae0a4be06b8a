"""The verdict of `diagnose`: whether a model is flagged, why, and the fix.

The rules and their thresholds are those documented in
`frozen_bn.diagnose`; `judge` applies them to a filled-in report.
"""

import numpy as np

from frozen_bn._fit_behaviour import (
    BATCH_STATISTICS,
    FROZEN,
    OVERRIDDEN,
    STOCK_V1,
    SWITCHED_OFF,
)
from frozen_bn._text import names, percent

# Inference accuracy this close to chance, with an AUC this high, flags.
CHANCE_MARGIN = 0.10
HIGH_AUC = 0.90
# Training and inference mode this far apart flag.
ACCURACY_GAP = 0.10
OUTPUT_GAP = 0.5
# A layer's inputs drifted from its moving statistics.
MEAN_SHIFT = 1.0
VARIANCE_RATIO = (0.5, 2.0)


def drift(statistics, reference, epsilon):
    """How far a layer's statistics are from reference ones.

    Args:
        statistics: A `(mean, variance)` pair of per-channel arrays.
        reference: The `(mean, variance)` they are compared with, e.g. the
            layer's moving statistics.
        epsilon: The layer's epsilon.

    Returns:
        A pair: the root mean square over the channels of the standardized
        mean shift `(mean - reference_mean) / sqrt(reference_variance +
        epsilon)`, and the geometric mean over the channels of `(variance +
        epsilon) / (reference_variance + epsilon)`; `(0.0, 1.0)` when the
        two agree.
    """
    (mean, variance), (reference_mean, reference_variance) = (
        [np.asarray(value, "float64") for value in pair]
        for pair in (statistics, reference)
    )
    epsilon = float(epsilon)
    shift = (mean - reference_mean) / np.sqrt(reference_variance + epsilon)
    ratio = (variance + epsilon) / (reference_variance + epsilon)
    return (
        float(np.sqrt(np.mean(shift**2))),
        float(np.exp(np.mean(np.log(ratio)))),
    )


def is_drifted(mean_shift, variance_ratio):
    """Whether a layer's moving statistics do not describe the data."""
    low, high = VARIANCE_RATIO
    return mean_shift >= MEAN_SHIFT or not low <= variance_ratio <= high


def is_at_risk(behaviour, drifted):
    """Whether `fit()` will run a layer with the wrong statistics.

    Args:
        behaviour: The layer's `fit_behaviour` label.
        drifted: Whether its moving statistics drifted (`is_drifted`).

    Returns:
        `True` for a drifted layer that `fit()` does not keep frozen
        (training normalizes it with batch statistics, inference with
        moving ones), and for a layer meant to train that `fit()` keeps in
        inference mode (`SWITCHED_OFF`).
    """
    return behaviour == SWITCHED_OFF or drifted and behaviour != FROZEN


def judge(report):
    """Fills the `flagged`, `reasons` and `fix` of a `DiagnosisReport`."""
    if _judge_non_finite(report):
        return
    reasons = report.reasons
    reasons += _gap_reasons(report)
    if reasons and report.gap_sources:
        reasons.append(
            f"{names(report.gap_sources)} act differently in training mode "
            "by design (augmentation, dropout, noise): part of this gap is "
            "theirs, not the BatchNormalization statistics'."
        )
    if report.switched_off:
        reasons.append(
            "This Keras runs a call recorded with training=False (or "
            "training=None) in inference mode under fit(), with the layers "
            f"called after it, so fit() will not train "
            f"{names(report.switched_off)}."
        )
    if report.plain_call_training:
        reasons.append(
            "In a call without training (model(x), tf.function, an "
            "exported model) this Keras runs "
            + names(
                [f"{bn} (after {c})" for bn, c in report.plain_call_training]
            )
            + " in training mode: the layer named first has a call that "
            "defaults to training=True."
        )
    drifted = [layer.name for layer in report.layers if layer.drifted]
    if drifted:
        reasons.append(
            "The moving statistics do not describe this data in "
            f"{names(drifted)}."
        )
    report.flagged = bool(reasons)
    if report.flagged:
        report.fix = _fix(report)


def headline(report):
    """The first words of a flagged report's verdict: what is wrong."""
    drifted = any(layer.drifted for layer in report.layers)
    if drifted or _gap_reasons(report) and not report.gap_sources:
        return "Out-of-scale BatchNormalization statistics."
    if report.switched_off or report.plain_call_training:
        return "Layers that will run in the wrong mode."
    return "Training and inference mode differ."


def gap_sources_note(report):
    """The report's note on the layers that act differently in training."""
    off = [name for name in report.gap_sources if name in report.switched_off]
    note = (
        f"the training-mode pass runs {names(report.gap_sources)} in "
        "training mode, where they act differently by design "
        "(augmentation, dropout, noise): part of the gap is theirs"
    )
    if off:
        note += f"; fit() will run {names(off)} in inference mode (see above)"
    return note + "."


def _gap_reasons(report):
    """The reasons to flag that compare the outputs of the two modes."""
    reasons = []
    inference, training = report.inference, report.training
    if report.task == "binary":
        accuracy, auc = inference["accuracy"], inference["auc"]
        if abs(accuracy - report.chance) <= CHANCE_MARGIN and auc >= HIGH_AUC:
            reasons.append(
                f"In inference mode accuracy is {percent(accuracy)}, close "
                f"to chance ({percent(report.chance)}), while the ROC AUC "
                f"is {auc:.3f}: the ranking is right, the probabilities "
                "are out of scale."
            )
    if inference is not None:
        gap = abs(training["accuracy"] - inference["accuracy"])
        if gap >= ACCURACY_GAP:
            reasons.append(
                f"Accuracy is {percent(training['accuracy'])} in training "
                f"mode but {percent(inference['accuracy'])} in inference "
                "mode."
            )
    if report.output_gap >= OUTPUT_GAP:
        reasons.append(
            f"The outputs differ between training and inference mode by "
            f"{report.output_gap:.2f} output standard deviations."
        )
    return reasons


def _judge_non_finite(report):
    """Flags NaN or infinite outputs or BN inputs, which no statistic causes.

    The data is checked finite before the pass, so they come from the
    weights: recalibrating would only write NaN statistics.

    Returns:
        Whether the report was flagged for them.
    """
    layers = [
        layer.name
        for layer in report.layers
        if not (
            np.isfinite(layer.mean_shift) and np.isfinite(layer.variance_ratio)
        )
    ]
    if not report.non_finite_outputs and not layers:
        return False
    where = []
    if report.non_finite_outputs:
        where.append(f"{report.non_finite_outputs} output values")
    if layers:
        where.append(f"the inputs of {names(layers)}")
    report.reasons.append(
        f"The model computes NaN or infinite values on finite data "
        f"({' and '.join(where)}): its weights are NaN or out of range (e.g. "
        "a diverged training run). The BN statistics are not the cause."
    )
    report.flagged = True
    report.fix = (
        "Restore finite weights (an earlier checkpoint, a lower learning "
        "rate); recalibrating would only write NaN statistics."
    )
    return True


def _fix(report):
    at_risk = [layer for layer in report.layers if layer.at_risk]
    steps = []
    patch_fixes = (OVERRIDDEN, STOCK_V1, SWITCHED_OFF)
    if report.switched_off or any(
        layer.fit_behaviour in patch_fixes for layer in at_risk
    ):
        steps.append(
            "`frozen_bn.patch_model(model)` so that fit() keeps frozen layers "
            "and those called with training=False in inference mode, and "
            "trains the layers after them"
        )
    trainable = [
        layer.name
        for layer in at_risk
        if layer.fit_behaviour == BATCH_STATISTICS
    ]
    if trainable:
        steps.append(
            f"freeze {names(trainable)} before fine-tuning (after "
            "`frozen_bn.patch_model(model)`: `trainable = False`, or "
            "`freeze_moving_stats = True` to keep training gamma and beta)"
        )
    if report.plain_call_training:
        steps.append(
            "call the model with training=False, or export it with "
            "`frozen_bn.export(model, ...)`, to serve it in inference mode"
        )
    if any(layer.drifted for layer in report.layers):
        steps.append(
            "`frozen_bn.recalibrate(model, x)` to re-estimate the drifted "
            "layers' statistics on this data"
        )
    if not steps and report.gap_sources:
        steps.append(
            "none for the BatchNormalization layers: the gap comes from "
            f"{names(report.gap_sources)}"
        )
    if not steps:
        steps.append(
            "`frozen_bn.patch_model(model)`, then "
            "`frozen_bn.recalibrate(model, x)`"
        )
    return "; ".join(steps) + "."
