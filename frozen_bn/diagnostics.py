"""Detects the frozen-BN discrepancy in a model: per layer, with a verdict.

The check of the 2018 "Keras BN layer is broken" experiment (Datumbox),
made a function: run the model on the same data in inference mode and in
training mode, compare, and look for chance-level accuracy with a high ROC
AUC (the probabilities are out of scale, the ranking is not). On top of
that, every BatchNormalization layer's inputs on the data are compared with
its moving statistics, and each layer is told apart by how `fit()` will run
it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

from frozen_bn import (
    _diagnosis_data,
    _mode_gap,
    _moving_stats,
    _training_arg,
)
from frozen_bn._checks import check_model
from frozen_bn._fit_behaviour import (
    BatchNormRow,
    fit_behaviours,
    plain_call_pairs,
    switched_off_layers,
)
from frozen_bn._reading import ModelReading
from frozen_bn._report_text import report_text
from frozen_bn._verdict import (
    drift,
    gap_sources_note,
    headline,
    is_at_risk,
    is_drifted,
    judge,
)

if TYPE_CHECKING:
    import keras
    import matplotlib.figure


@dataclasses.dataclass
class LayerDiagnosis(BatchNormRow):
    """One BatchNormalization layer's statistics on the data.

    Attributes:
        name: The layer's name.
        class_name: Its class, e.g. `"keras.BatchNormalization"`.
        trainable: Its `trainable` flag.
        freeze_moving_stats: Its `freeze_moving_stats` flag, or `None` for
            a stock layer.
        fit_behaviour: How `fit()` will run it, e.g. `"frozen"` or
            `"batch statistics"` (see `frozen-bn inspect`). Formerly
            `under_fit`, which still reads it with a `DeprecationWarning`.
        mean_shift: Root mean square over the channels of the standardized
            mean shift `(mean - moving_mean) / sqrt(moving_variance + eps)`,
            `mean` being the mean of the layer's inputs on the data (the
            model in inference mode).
        variance_ratio: Geometric mean over the channels of
            `(variance + eps) / (moving_variance + eps)`.
        drifted: Whether `mean_shift >= 1` or `variance_ratio` is outside
            `[0.5, 2]`: the moving statistics do not describe this data.
        at_risk: Drifted and not frozen under `fit()` (training will
            normalize it with batch statistics, inference with moving
            ones), or meant to train and kept in inference mode by an
            earlier `training=False` (Keras 3.16).
    """

    mean_shift: float
    variance_ratio: float
    drifted: bool
    at_risk: bool

    @property
    def under_fit(self):
        """Deprecated: the former name of `fit_behaviour`."""
        warnings.warn(
            "`LayerDiagnosis.under_fit` is deprecated and will be removed "
            "in a future release. Use `fit_behaviour` instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.fit_behaviour


@dataclasses.dataclass
class DiagnosisReport:
    """What `diagnose` found. Print `to_text()`, or `plot()` it.

    Attributes:
        samples: Number of samples the model ran on.
        layers: A `LayerDiagnosis` per BN layer, in model order.
        output_gap: Mean absolute difference between the training-mode and
            inference-mode outputs, divided by the standard deviation of
            all their values (both modes pooled); 0 when they agree.
        prediction_disagreement: Fraction of samples whose predicted class
            (argmax, or threshold 0.5 for one output) differs between modes;
            `None` when the outputs are not one vector of scores per sample
            (e.g. a backbone's feature map).
        non_finite_outputs: How many output values are NaN or infinite (both
            modes together). The inputs are checked finite first, so such
            outputs come from the model's weights: the report flags them as
            the cause, and no BN statistics are blamed.
        task: `"binary"` or `"multiclass"` with labels, else `None`.
        chance: Accuracy of always predicting the most frequent label.
        inference: Metrics in inference mode (`loss`, `accuracy`, and for a
            binary task `auc` and `positive_rate`), or `None` without labels.
        training: The same metrics in training mode.
        flagged: Whether the model shows the frozen-BN discrepancy.
        reasons: Why it is flagged, one sentence each.
        fix: What to do about it (empty when not flagged).
        notes: Caveats of this diagnosis (e.g. dropout noise).
        switched_off: Names of the BN, Dropout and noise layers meant to
            train that a recorded `training=False` or `training=None`
            keeps in inference mode under `fit()` (Keras 3.16; see
            `switched_off_layers`).
        plain_call_training: `(batch_norm, cause)` name pairs: each BN
            layer that a call of the model without `training` (`model(x)`,
            an exported model) runs in training mode, and the layer whose
            `training=True` default causes it (Keras <= 3.15; see
            `frozen_bn._training_arg.plain_call_in_training_mode`).
        gap_sources: Names of the layers other than BN that act
            differently in training mode by design (augmentation,
            Dropout and noise layers) and run so in the training-mode
            pass: part of `output_gap` is theirs.
    """

    samples: int
    layers: list
    output_gap: float
    prediction_disagreement: float | None
    non_finite_outputs: int = 0
    task: str | None = None
    chance: float | None = None
    inference: dict | None = None
    training: dict | None = None
    flagged: bool = False
    reasons: list = dataclasses.field(default_factory=list)
    fix: str = ""
    notes: list = dataclasses.field(default_factory=list)
    switched_off: list = dataclasses.field(default_factory=list)
    plain_call_training: list = dataclasses.field(default_factory=list)
    gap_sources: list = dataclasses.field(default_factory=list)

    @property
    def verdict(self) -> str:
        """The verdict in plain words."""
        if not self.flagged:
            return (
                "No sign of out-of-scale BatchNormalization statistics: "
                "training and inference mode agree, and every layer's "
                "moving statistics describe this data."
            )
        return headline(self) + " " + " ".join(self.reasons)

    def to_dict(self) -> dict:
        """The report as a JSON-serializable dict (NaN becomes `None`)."""
        data = dataclasses.asdict(self)
        data["verdict"] = self.verdict
        return _json_safe(data)

    def to_text(self) -> str:
        """The report as an aligned table and the verdict, for printing."""
        return report_text(self)

    def plot(self) -> matplotlib.figure.Figure:
        """Per-layer drift bars and train vs inference metrics.

        Needs matplotlib (`pip install matplotlib`, or the `plot` extra:
        `pip install '.[plot]'` in a clone of frozen_bn).

        Returns:
            A `matplotlib.figure.Figure` with three axes: the standardized
            mean shift and the variance ratio (log scale) of the 25 most
            drifted layers, worst first, as horizontal bars coloured by
            the layer's flag (at risk, drifted, within thresholds), with
            the thresholds drawn; and the metrics in training vs inference
            mode (the output gap without labels).
        """
        from frozen_bn._report_figure import report_figure

        return report_figure(self)


def diagnose(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    batch_size: int = 32,
    verbose: int | str = "auto",
) -> DiagnosisReport:
    """Detects out-of-scale BatchNormalization statistics in a model.

    The detection method of the 2018 "Keras BN layer is broken" experiment
    (Datumbox), made a tool: run the model on the same data in inference
    mode and in training mode (BN layers normalize with batch statistics
    where `fit()` would) and compare. With labels, the tell-tale sign is
    accuracy close to chance while the ROC AUC stays high, or a large
    accuracy gap between the modes; without, a large gap between the
    outputs. Each BatchNormalization layer (stock Keras 3, frozen_bn,
    tf_keras) is measured too, those inside nested models and custom layers
    included: the mean and variance of its inputs on `x` against its moving
    statistics, and how `fit()` will run it, so the layers at risk are named
    before training.

    The verdict flags the model when any of these holds:
    - inference accuracy within 10 points of chance while the ROC AUC is
      at least 0.9 (binary task);
    - training and inference accuracy 10 points apart or more;
    - outputs that differ between the modes by half their standard
      deviation or more (mean absolute difference);
    - a layer whose inputs drifted from its moving statistics: standardized
      mean shift of 1 or more (root mean square over channels), or a
      variance ratio outside `[0.5, 2]` (geometric mean over channels).

    Cost: one pass in inference mode that yields the outputs and reads
    every BN input at once, and one pass in training mode. Neither writes
    any variable: the model is left bitwise as it was. The training-mode
    pass runs the whole model in training mode, as `fit()` does, so
    augmentation, Dropout and noise layers are active there too: the report
    names them (`gap_sources`), and when no layer's statistics drifted a
    gap is put down to them, not to the BatchNormalization statistics.
    Outputs are read as probabilities when they look like ones (in `[0,
    1]`; rows summing to 1 for several outputs), otherwise as logits.

    With several workers (as for `recalibrate`), each passes its own shard
    of `x` and `y`, and every worker reports over the union of the shards.

    Args:
        model: A built Keras 3 or tf_keras model with one output of class
            scores per sample for the metrics; any outputs otherwise (e.g.
            a backbone's feature maps, compared by the output gap alone).
        x: The inputs: a numpy array, or a list/dict of them (the array
            forms of frozen_bn's data contract, docs/data.md), finite and
            fitting the model's inputs (a `ValueError` names the first value
            that is not). A keras-hub task with a `preprocessor`
            preprocesses them first, as in `predict()`.
        y: Optional labels: 0/1 for one output (binary), class indices or
            one-hot rows for several (multiclass).
        batch_size: Batch size of the pass (each batch runs in both
            modes); batch statistics are those of batches of this size.
        verbose: `"auto"`, 0, 1 or 2, as in `fit()`: a progress bar of the
            pass.

    Returns:
        A `DiagnosisReport`.

    Example:

    >>> report = frozen_bn.diagnose(model, x_val, y_val)
    >>> print(report.to_text())
    >>> report.plot().savefig("diagnosis.png")
    """
    check_model(model)
    samples = _diagnosis_data.check_inputs(model, x, batch_size=batch_size)
    labels = None if y is None else _diagnosis_data.check_labels(y, samples)
    reading = ModelReading(model)
    behaviours = fit_behaviours(reading)
    layers = [layer for layer, _ in behaviours]
    statistics, gap = _mode_gap.ModeComparison(model, layers).run(
        x, labels, name="x", batch_size=batch_size, verbose=verbose
    )
    switched_off = switched_off_layers(reading)
    report = DiagnosisReport(
        layers=[
            _layer_diagnosis(layer, behaviour, measured)
            for (layer, behaviour), measured in zip(
                behaviours, statistics, strict=True
            )
        ],
        switched_off=[layer.name for layer in switched_off],
        plain_call_training=[
            (bn.name, cause.name) for bn, cause in plain_call_pairs(reading)
        ],
        gap_sources=[
            layer.name for layer in _training_arg.gap_sources(reading)
        ],
        **dataclasses.asdict(gap),
    )
    if report.gap_sources:
        report.notes.append(gap_sources_note(report))
    judge(report)
    return report


def _layer_diagnosis(layer, behaviour, measured):
    [(moving_mean, moving_variance)] = _moving_stats.read([layer])
    mean_shift, variance_ratio = drift(
        (measured.mean, measured.variance),
        (moving_mean, moving_variance),
        layer.epsilon,
    )
    # Non-finite inputs of a layer come from the weights below it (the
    # data is checked finite): the verdict names them, not its statistics.
    finite = math.isfinite(mean_shift) and math.isfinite(variance_ratio)
    drifted = finite and is_drifted(mean_shift, variance_ratio)
    return LayerDiagnosis.of(
        layer,
        behaviour,
        mean_shift=mean_shift,
        variance_ratio=variance_ratio,
        drifted=drifted,
        at_risk=is_at_risk(behaviour, drifted),
    )


def _json_safe(value):
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
