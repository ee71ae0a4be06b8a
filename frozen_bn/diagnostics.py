"""Detects the frozen-BN discrepancy in a model: per layer, with a verdict.

The seed post's test, made a function: run the model on the same data in
inference mode and in training mode, compare, and look for chance-level
accuracy with a high ROC AUC (the probabilities are out of scale, the
ranking is not). On top of that, every BatchNormalization layer's inputs on
the data are compared with its moving statistics, and each layer is told
apart by how `fit()` will run it.
"""

import dataclasses
import math
import reprlib

import keras
import numpy as np

from frozen_bn import _data, _probe, _training_arg
from frozen_bn._checks import check_model
from frozen_bn._fit_behaviour import (
    BATCH_STATISTICS,
    FROZEN,
    OVERRIDDEN,
    STOCK_V1,
    SWITCHED_OFF,
    class_label,
    fit_behaviours,
    switched_off_layers,
)
from frozen_bn._walk import iter_layers

# The verdict's thresholds (see `diagnose`).
CHANCE_MARGIN = 0.10
HIGH_AUC = 0.90
ACCURACY_GAP = 0.10
OUTPUT_GAP = 0.5
MEAN_SHIFT = 1.0
VARIANCE_RATIO = (0.5, 2.0)


@dataclasses.dataclass
class LayerDiagnosis:
    """One BatchNormalization layer's statistics on the data.

    Attributes:
        name: The layer's name.
        class_name: Its class, e.g. `"keras.BatchNormalization"`.
        trainable: Its `trainable` flag.
        freeze_moving_stats: Its `freeze_moving_stats` flag, or `None` for
            a stock layer.
        under_fit: How `fit()` will run it (see `fit_behaviour`).
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
            ones), or meant to train and switched off (`SWITCHED_OFF`).
    """

    name: str
    class_name: str
    trainable: bool
    freeze_moving_stats: bool | None
    under_fit: str
    mean_shift: float
    variance_ratio: float
    drifted: bool
    at_risk: bool


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
        task: `"binary"` or `"multiclass"` with labels, else `None`.
        chance: Accuracy of always predicting the most frequent label.
        inference: Metrics in inference mode (`loss`, `accuracy`, and for a
            binary task `auc` and `positive_rate`), or `None` without labels.
        training: The same metrics in training mode.
        flagged: Whether the model shows the frozen-BN discrepancy.
        reasons: Why it is flagged, one sentence each.
        fix: What to do about it (empty when not flagged).
        notes: Caveats of this diagnosis (e.g. dropout noise).
        switched_off: Names of the BN, Dropout and noise layers that an
            earlier recorded `training=False` keeps in inference mode under
            `fit()` (Keras 3.16; see `switched_off_layers`).
    """

    samples: int
    layers: list
    output_gap: float
    prediction_disagreement: float | None
    task: str | None = None
    chance: float | None = None
    inference: dict | None = None
    training: dict | None = None
    flagged: bool = False
    reasons: list = dataclasses.field(default_factory=list)
    fix: str = ""
    notes: list = dataclasses.field(default_factory=list)
    switched_off: list = dataclasses.field(default_factory=list)

    @property
    def verdict(self):
        """The verdict in plain words."""
        if not self.flagged:
            return (
                "No sign of out-of-scale BatchNormalization statistics: "
                "training and inference mode agree, and every layer's "
                "moving statistics describe this data."
            )
        return "Out-of-scale BatchNormalization statistics. " + " ".join(
            self.reasons
        )

    def to_dict(self):
        """The report as a JSON-serializable dict (NaN becomes `None`)."""
        data = dataclasses.asdict(self)
        data["verdict"] = self.verdict
        return _json_safe(data)

    def to_text(self):
        """The report as an aligned table and the verdict, for printing."""
        gap = (
            f"output gap (training vs inference): {self.output_gap:.3f} "
            "(in output standard deviations)"
        )
        if self.prediction_disagreement is not None:
            gap += (
                "; predictions differ on "
                f"{_percent(self.prediction_disagreement)} of samples"
            )
        lines = [f"frozen_bn diagnosis on {self.samples} samples", gap]
        if self.task is not None:
            lines += ["", *_metric_table(self), ""]
        rows = [
            (
                layer.name,
                layer.class_name,
                str(layer.trainable),
                "-"
                if layer.freeze_moving_stats is None
                else str(layer.freeze_moving_stats),
                f"{layer.mean_shift:.2f}",
                f"{layer.variance_ratio:#.3g}",
                "DRIFT" if layer.drifted else "ok",
                layer.under_fit + ("  <- at risk" if layer.at_risk else ""),
            )
            for layer in self.layers
        ]
        header = (
            "layer",
            "class",
            "trainable",
            "freeze",
            "mean shift",
            "var ratio",
            "stats",
            "under fit()",
        )
        lines += format_table(header, rows, numeric={4, 5})
        lines += ["", "Verdict: " + self.verdict]
        if self.fix:
            lines.append("Fix: " + self.fix)
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def plot(self):
        """Per-layer drift bars and train vs inference metrics.

        Needs matplotlib (`pip install 'frozen_bn[plot]'`).

        Returns:
            A `matplotlib.figure.Figure` with three axes: the standardized
            mean shift of each layer, its variance ratio (log scale), both
            in model order with the thresholds drawn, and the metrics in
            training vs inference mode.
        """
        from matplotlib import ticker
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 3.6), layout="constrained")
        shift, ratio, metrics = figure.subplots(1, 3)
        names = [layer.name for layer in self.layers]
        colors = ["tab:red" if x.drifted else "tab:blue" for x in self.layers]
        positions = np.arange(len(names))
        shift.bar(positions, [x.mean_shift for x in self.layers], color=colors)
        shift.axhline(MEAN_SHIFT, color="gray", linestyle="--")
        shift.set_title("standardized mean shift")
        ratios = np.array([x.variance_ratio for x in self.layers])
        # Bars grow from 1 (no change), up or down on a log scale.
        ratio.bar(positions, ratios - 1.0, bottom=1.0, color=colors)
        ratio.set_yscale("log")
        ratio.axhline(1.0, color="black", linewidth=0.8)
        for bound in VARIANCE_RATIO:
            ratio.axhline(bound, color="gray", linestyle="--")
        low = np.log2(min(ratios.min(initial=1.0), VARIANCE_RATIO[0]))
        high = np.log2(max(ratios.max(initial=1.0), VARIANCE_RATIO[1]))
        ticks = 2.0 ** np.arange(np.floor(low), np.ceil(high) + 1)
        ratio.set_yticks(ticks, [f"{tick:g}" for tick in ticks])
        ratio.yaxis.set_minor_formatter(ticker.NullFormatter())
        ratio.set_ylim(ticks[0], ticks[-1])
        ratio.set_title("variance ratio (data / moving)")
        for axes in (shift, ratio):
            axes.set_xticks(positions, names, rotation=60, ha="right")
        _plot_metrics(metrics, self)
        return figure


def diagnose(model, x, y=None, *, batch_size=32, verbose="auto"):
    """Detects out-of-scale BatchNormalization statistics in a model.

    The seed post's detection method, made a tool: run the model on the
    same data in inference mode and in training mode (BN layers normalize
    with batch statistics where `fit()` would) and compare. With labels,
    the tell-tale sign is accuracy close to chance while the ROC AUC stays
    high, or a large accuracy gap between the modes; without, a large gap
    between the outputs. Each BatchNormalization layer (stock Keras 3,
    frozen_bn, tf_keras) is measured too, those inside nested models and
    custom layers included: the mean and variance of its inputs on `x`
    against its moving statistics, and how `fit()` will run it, so the
    layers at risk are named before training.

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
    pass runs the whole model in training mode, as `fit()` does, so dropout
    and other training-only layers are active there too (the report notes
    it). Outputs are read as probabilities when they look like ones (in
    `[0, 1]`; rows summing to 1 for several outputs), otherwise as logits.

    Args:
        model: A built Keras 3 or tf_keras model with one output of class
            scores per sample for the metrics; any outputs otherwise (e.g.
            a backbone's feature maps, compared by the output gap alone).
        x: The inputs: a numpy array, or a list/dict of them. A keras-hub
            task with a `preprocessor` preprocesses them first, as in
            `predict()`.
        y: Optional labels: 0/1 for one output (binary), class indices or
            one-hot rows for several (multiclass).
        batch_size: Batch size of both passes; batch statistics are those
            of batches of this size.
        verbose: `"auto"`, 0, 1 or 2, as in `fit()`: progress bars of the
            two passes.

    Returns:
        A `DiagnosisReport`.

    Example:

    >>> report = frozen_bn.diagnose(model, x_val, y_val)
    >>> print(report.to_text())
    >>> report.plot().savefig("diagnosis.png")
    """
    check_model(model)
    samples = _check_inputs(model, x)
    labels = None if y is None else _check_labels(y, samples)
    behaviours = fit_behaviours(model)
    layers = [layer for layer, _ in behaviours]
    statistics, inference = _probe.measure_inputs(
        model,
        x,
        layers,
        training=False,
        batch_size=batch_size,
        verbose=verbose,
        return_outputs=True,
    )
    _, training = _probe.measure_inputs(
        model,
        x,
        [],
        training=True,
        batch_size=batch_size,
        verbose=verbose,
        return_outputs=True,
    )
    scores = _are_scores(inference)
    inference, training = _flat(inference), _flat(training)
    disagreement = None  # A feature map has no predicted class.
    if scores:
        disagreement = float(
            np.mean(_predicted(inference) != _predicted(training))
        )
    report = DiagnosisReport(
        samples=samples,
        layers=[
            _layer_diagnosis(layer, behaviour, measured)
            for (layer, behaviour), measured in zip(
                behaviours, statistics, strict=True
            )
        ],
        output_gap=_output_gap(inference, training),
        prediction_disagreement=disagreement,
        switched_off=[layer.name for layer in switched_off_layers(model)],
    )
    if labels is not None:
        _add_metrics(report, labels, inference, training)
    if any(map(_training_arg.is_training_only, iter_layers(model))):
        report.notes.append(
            "the model has dropout or noise layers, active in training "
            "mode as under fit(): part of the gap is their noise."
        )
    _judge(report)
    return report


def _check_inputs(model, x):
    arrays = keras.tree.flatten(x)
    if not arrays or not all(
        hasattr(a, "shape") and hasattr(a, "dtype") for a in arrays
    ):
        raise TypeError(
            "Expected `x` to be a numpy array or a list/dict of them. "
            f"Received: x={reprlib.repr(x)} of type {type(x).__name__}"
        )
    # A preprocessor (keras-hub) decides which inputs it takes.
    preprocessed = _data.preprocessing(model) is not None
    expected = [tuple(t.shape) for t in getattr(model, "inputs", None) or []]
    received = [tuple(a.shape) for a in arrays]
    if expected and not preprocessed and not _shapes_fit(expected, received):
        raise ValueError(
            f"Expected `x` to fit the inputs of `model` ({model.name!r}), of "
            f"shapes {_shape_text(expected)}. Received: x of shapes "
            f"{_shape_text(received)}"
        )
    return int(arrays[0].shape[0])


def _shapes_fit(expected, received):
    if len(expected) != len(received):
        return False
    return all(
        len(want) == len(got)
        and all(w is None or w == g for w, g in zip(want, got, strict=True))
        for want, got in zip(expected, received, strict=True)
    )


def _shape_text(shapes):
    return ", ".join(str(shape) for shape in shapes)


def _check_labels(y, samples):
    labels = np.asarray(y)
    if labels.ndim == 0 or labels.shape[0] != samples:
        raise ValueError(
            f"Expected `y` to hold one label per sample ({samples}). "
            f"Received: y of shape {labels.shape}"
        )
    return labels


def _are_scores(outputs):
    """Whether `outputs` is one vector (or scalar) per sample: classes."""
    return all(np.ndim(output) <= 2 for output in keras.tree.flatten(outputs))


def _flat(outputs):
    """All outputs as one `(samples, units)` float64 array."""
    parts = [np.asarray(o, "float64") for o in keras.tree.flatten(outputs)]
    return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)


def _output_gap(inference, training):
    gap = float(np.mean(np.abs(training - inference)))
    spread = float(np.std(np.concatenate([inference, training])))
    return 0.0 if gap == 0.0 else gap / spread


def _predicted(outputs):
    if outputs.shape[1] == 1:
        return (_probabilities(outputs)[:, 0] >= 0.5).astype(int)
    return np.argmax(outputs, axis=1)


def _probabilities(outputs):
    """Probabilities from outputs that may be logits (see `diagnose`)."""
    if outputs.shape[1] == 1:
        if outputs.min() >= 0.0 and outputs.max() <= 1.0:
            return outputs
        return 1.0 / (1.0 + np.exp(-outputs))
    if outputs.min() >= 0.0 and np.allclose(outputs.sum(axis=1), 1, atol=1e-3):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


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


def _add_metrics(report, labels, inference, training):
    if inference.shape[1] == 1:
        report.task = "binary"
        target = labels.reshape(len(labels), -1)
        if target.shape[1] != 1 or not np.isin(target, (0, 1)).all():
            raise ValueError(
                "Expected `y` to hold 0/1 labels for a model with one "
                f"output. Received: y with values {np.unique(target)[:10]}"
            )
        target = target[:, 0].astype(int)
        report.chance = float(max(target.mean(), 1.0 - target.mean()))
    else:
        report.task = "multiclass"
        target = _class_indices(labels, inference.shape[1])
        report.chance = float(np.bincount(target).max() / len(target))
    report.inference = _metrics(report.task, target, inference)
    report.training = _metrics(report.task, target, training)


def _class_indices(labels, classes):
    if labels.ndim == 2 and labels.shape[1] == classes:
        return np.argmax(labels, axis=1)
    indices = labels.reshape(-1)
    if (
        labels.ndim > 2
        or indices.size != labels.shape[0]
        or not np.all(np.mod(indices, 1) == 0)
        or indices.min() < 0
        or indices.max() >= classes
    ):
        raise ValueError(
            f"Expected `y` to hold class indices in [0, {classes}) or "
            f"one-hot rows of {classes} for a model with {classes} outputs. "
            f"Received: y of shape {labels.shape}"
        )
    return indices.astype(int)


def _metrics(task, target, outputs):
    probabilities = np.clip(_probabilities(outputs), 1e-7, 1.0 - 1e-7)
    if task == "binary":
        p = probabilities[:, 0]
        loss = -np.mean(target * np.log(p) + (1 - target) * np.log(1 - p))
        return {
            "loss": float(loss),
            "accuracy": float(np.mean((p >= 0.5) == target)),
            "auc": roc_auc(target, p),
            "positive_rate": float(np.mean(p >= 0.5)),
        }
    chosen = probabilities[np.arange(len(target)), target]
    return {
        "loss": float(-np.mean(np.log(chosen))),
        "accuracy": float(np.mean(np.argmax(outputs, axis=1) == target)),
    }


def _layer_diagnosis(layer, behaviour, measured):
    epsilon = float(layer.epsilon)
    moving_mean = _probe.to_numpy(layer.moving_mean).astype("float64")
    moving_variance = _probe.to_numpy(layer.moving_variance).astype("float64")
    shift = (measured.mean - moving_mean) / np.sqrt(moving_variance + epsilon)
    ratio = (measured.variance + epsilon) / (moving_variance + epsilon)
    mean_shift = float(np.sqrt(np.mean(shift**2)))
    variance_ratio = float(np.exp(np.mean(np.log(ratio))))
    low, high = VARIANCE_RATIO
    drifted = mean_shift >= MEAN_SHIFT or not low <= variance_ratio <= high
    return LayerDiagnosis(
        name=layer.name,
        class_name=class_label(layer),
        trainable=bool(layer.trainable),
        freeze_moving_stats=getattr(layer, "freeze_moving_stats", None),
        under_fit=behaviour,
        mean_shift=mean_shift,
        variance_ratio=variance_ratio,
        drifted=drifted,
        at_risk=behaviour == SWITCHED_OFF or drifted and behaviour != FROZEN,
    )


def _judge(report):
    """Fills `flagged`, `reasons` and `fix` by the rules of `diagnose`."""
    reasons = report.reasons
    inference, training = report.inference, report.training
    if report.task == "binary":
        accuracy, auc = inference["accuracy"], inference["auc"]
        if abs(accuracy - report.chance) <= CHANCE_MARGIN and auc >= HIGH_AUC:
            reasons.append(
                f"In inference mode accuracy is {_percent(accuracy)}, close "
                f"to chance ({_percent(report.chance)}), while the ROC AUC "
                f"is {auc:.3f}: the ranking is right, the probabilities "
                "are out of scale."
            )
    if inference is not None:
        gap = abs(training["accuracy"] - inference["accuracy"])
        if gap >= ACCURACY_GAP:
            reasons.append(
                f"Accuracy is {_percent(training['accuracy'])} in training "
                f"mode but {_percent(inference['accuracy'])} in inference "
                "mode."
            )
    if report.output_gap >= OUTPUT_GAP:
        reasons.append(
            f"The outputs differ between training and inference mode by "
            f"{report.output_gap:.2f} output standard deviations."
        )
    if report.switched_off:
        reasons.append(
            "This Keras passes a recorded training=False on to the layers "
            "called after it, so fit() will not train "
            f"{_names(report.switched_off)}."
        )
    drifted = [layer.name for layer in report.layers if layer.drifted]
    if drifted:
        reasons.append(
            "The moving statistics do not describe this data in "
            f"{_names(drifted)}."
        )
    report.flagged = bool(reasons)
    if report.flagged:
        report.fix = _fix(report)


def _fix(report):
    at_risk = [layer for layer in report.layers if layer.at_risk]
    steps = []
    patch_fixes = (OVERRIDDEN, STOCK_V1, SWITCHED_OFF)
    if report.switched_off or any(
        layer.under_fit in patch_fixes for layer in at_risk
    ):
        steps.append(
            "`frozen_bn.patch_model(model)` so that fit() keeps frozen layers "
            "and those called with training=False in inference mode, and "
            "trains the layers after them"
        )
    trainable = [x.name for x in at_risk if x.under_fit == BATCH_STATISTICS]
    if trainable:
        steps.append(
            f"freeze {_names(trainable)} before fine-tuning (after "
            "`frozen_bn.patch_model(model)`: `trainable = False`, or "
            "`freeze_moving_stats = True` to keep training gamma and beta)"
        )
    if any(layer.drifted for layer in report.layers):
        steps.append(
            "`frozen_bn.recalibrate(model, x)` to re-estimate the drifted "
            "layers' statistics on this data"
        )
    if not steps:
        steps.append(
            "`frozen_bn.patch_model(model)`, then "
            "`frozen_bn.recalibrate(model, x)`"
        )
    return "; ".join(steps) + "."


def _names(names):
    shown = ", ".join(names[:8])
    more = len(names) - 8
    return shown + (f" and {more} more" if more > 0 else "")


def _percent(value):
    return f"{100.0 * value:.1f}%"


def _metric_table(report):
    names = ["loss", "accuracy"]
    if report.task == "binary":
        names += ["auc", "positive_rate"]
    rows = [
        (
            name,
            _figure(name, report.training[name]),
            _figure(name, report.inference[name]),
        )
        for name in names
    ]
    rows.append(("chance", "", _percent(report.chance)))
    return format_table(
        (f"{report.task} metric", "training mode", "inference mode"),
        rows,
        numeric={1, 2},
    )


def _figure(name, value):
    if name in ("accuracy", "positive_rate"):
        return _percent(value)
    return f"{value:.4f}"


def format_table(header, rows, numeric=frozenset()):
    """Lines of an aligned text table; columns in `numeric` right-aligned."""
    widths = [
        max(len(r[i]) for r in (header, *rows)) for i in range(len(header))
    ]

    def line(cells):
        return "  ".join(
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [
        line(row) for row in rows
    ]


def _plot_metrics(axes, report):
    axes.set_title("training vs inference mode")
    if report.inference is None:
        axes.bar([0], [report.output_gap], color="tab:orange")
        axes.axhline(OUTPUT_GAP, color="gray", linestyle="--")
        axes.set_xticks([0], ["output gap (std)"])
        return
    names = [n for n in ("accuracy", "auc") if n in report.inference]
    positions = np.arange(len(names))
    for offset, mode, color in (
        (-0.2, "training", "tab:green"),
        (0.2, "inference", "tab:orange"),
    ):
        values = getattr(report, mode)
        axes.bar(
            positions + offset,
            [values[n] for n in names],
            width=0.4,
            label=mode,
            color=color,
        )
    axes.axhline(report.chance, color="gray", linestyle="--", label="chance")
    axes.set_xticks(positions, names)
    axes.set_ylim(0, 1.05)
    axes.legend(loc="lower right")


def _json_safe(value):
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
