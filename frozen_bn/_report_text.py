"""`DiagnosisReport.to_text`: the report as aligned tables and sentences."""

from frozen_bn._fit_behaviour import COLUMNS
from frozen_bn._text import format_table, percent

# The columns of the layer table: `BatchNormRow.cells()` with the
# statistics before the last one (how `fit()` will run the layer).
_LAYER_COLUMNS = (
    *COLUMNS[:-1],
    "mean shift",
    "var ratio",
    "stats",
    COLUMNS[-1],
)


def report_text(report):
    """The `DiagnosisReport` as text: gap, metrics, layers, verdict, fix."""
    gap = (
        f"output gap (training vs inference): {report.output_gap:.3f} "
        "(in output standard deviations)"
    )
    if report.prediction_disagreement is not None:
        gap += (
            "; predictions differ on "
            f"{percent(report.prediction_disagreement)} of samples"
        )
    lines = [f"frozen_bn diagnosis on {report.samples} samples", gap]
    if report.task is not None:
        lines += ["", *_metric_table(report), ""]
    lines += format_table(
        _LAYER_COLUMNS,
        [_layer_cells(layer) for layer in report.layers],
        numeric={4, 5},
    )
    lines += ["", "Verdict: " + report.verdict]
    if report.fix:
        lines.append("Fix: " + report.fix)
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines)


def _layer_cells(layer):
    *flags, behaviour = layer.cells()
    return (
        *flags,
        f"{layer.mean_shift:.2f}",
        f"{layer.variance_ratio:#.3g}",
        "DRIFT" if layer.drifted else "ok",
        behaviour + ("  <- at risk" if layer.at_risk else ""),
    )


def _metric_table(report):
    names = ["loss", "accuracy"]
    if report.task == "binary":
        names += ["auc", "positive_rate"]
    rows = [
        (
            name,
            _metric_cell(name, report.training[name]),
            _metric_cell(name, report.inference[name]),
        )
        for name in names
    ]
    rows.append(("chance", "", percent(report.chance)))
    return format_table(
        (f"{report.task} metric", "training mode", "inference mode"),
        rows,
        numeric={1, 2},
    )


def _metric_cell(name, value):
    if name in ("accuracy", "positive_rate"):
        return percent(value)
    return f"{value:.4f}"
