"""`DiagnosisReport.plot`: the report as a matplotlib figure.

Readable for 3 layers and for 150: the layers are ranked by how far their
statistics drifted (each metric over its threshold, the larger of the
two), and only the `MAX_LAYERS` worst are drawn, as horizontal bars with
their names beside them. A bar's colour is its layer's flag in the report
(at risk, drifted, within thresholds), the same in both panels; a bar that
stays within the threshold of its own panel is drawn pale, so the panel
shows which metric flagged the layer. One legend, below the axes.

Imported only when a figure is asked for: matplotlib is optional (the
`plot` extra).
"""

import math

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from frozen_bn._verdict import MEAN_SHIFT, OUTPUT_GAP, VARIANCE_RATIO

MAX_LAYERS = 25
# The layer flags of the report, most serious first, and their colours.
STATUS_COLORS = {
    "at risk": "tab:red",
    "drifted": "tab:orange",
    "within thresholds": "tab:blue",
}
PALE = 0.35  # alpha of a bar within its panel's threshold
_ROW_INCHES = 0.26


def status(layer):
    """The report's flag of a `LayerDiagnosis`, a key of `STATUS_COLORS`."""
    if layer.at_risk:
        return "at risk"
    return "drifted" if layer.drifted else "within thresholds"


def ranked_layers(layers):
    """The `MAX_LAYERS` layers that drifted most, the worst first."""

    def drift(layer):
        ratio = abs(math.log2(layer.variance_ratio))
        beyond = (layer.mean_shift / MEAN_SHIFT, ratio / math.log2(2.0))
        return max(0.0 if math.isnan(v) else v for v in beyond)

    return sorted(layers, key=drift, reverse=True)[:MAX_LAYERS]


def report_figure(report):
    """The `DiagnosisReport` as a figure (see `DiagnosisReport.plot`)."""
    shown = ranked_layers(report.layers)
    rows = max(len(shown), 3)
    figure = Figure(
        figsize=(12, 1.6 + _ROW_INCHES * rows), layout="constrained"
    )
    # Room between the panels for the labels of their outer ticks.
    figure.get_layout_engine().set(wspace=0.06)
    shift, ratio, metrics = figure.subplots(1, 3, width_ratios=(1, 1, 0.45))
    colors = [STATUS_COLORS[status(layer)] for layer in shown]
    _plot_shifts(shift, [layer.mean_shift for layer in shown], colors)
    _plot_ratios(ratio, [layer.variance_ratio for layer in shown], colors)
    positions = np.arange(len(shown))
    shift.set_yticks(positions, [layer.name for layer in shown])
    ratio.set_yticks(positions, [""] * len(shown))
    for axes in (shift, ratio):
        axes.set_ylim(rows - 0.5, -0.5)  # the worst on top
    title = "BatchNormalization layers, most drifted first"
    if len(shown) < len(report.layers):
        title += f" ({len(shown)} of {len(report.layers)})"
    shift.set_title(title, loc="left")
    _plot_metrics(metrics, report)
    handles = [Patch(color=c, label=s) for s, c in STATUS_COLORS.items()]
    handles.append(Patch(color="gray", alpha=PALE, label="within threshold"))
    handles += metrics.get_legend_handles_labels()[0]
    figure.legend(
        handles=handles, loc="outside lower center", ncols=7, frameon=False
    )
    return figure


def _plot_shifts(axes, shifts, colors):
    crossing = [shift >= MEAN_SHIFT for shift in shifts]
    _bars(axes, shifts, colors, crossing)
    axes.axvline(MEAN_SHIFT, color="gray", linestyle="--")
    axes.set_xlim(0, 1.08 * max(MEAN_SHIFT, *shifts))
    axes.set_xlabel(f"standardized mean shift (threshold {MEAN_SHIFT:g})")


def _plot_ratios(axes, ratios, colors):
    low, high = VARIANCE_RATIO
    crossing = [not low <= ratio <= high for ratio in ratios]
    # Bars grow from 1 (no change), left or right on a log scale.
    _bars(axes, np.subtract(ratios, 1.0), colors, crossing, left=1.0)
    axes.set_xscale("log", base=2)
    _plain_log_ticks(axes, ratios)
    axes.axvline(1.0, color="black", linewidth=0.8)
    for bound in VARIANCE_RATIO:
        axes.axvline(bound, color="gray", linestyle="--")
    axes.set_xlabel(
        f"variance ratio, data / moving (thresholds {low:g}, {high:g})"
    )


def _bars(axes, widths, colors, crossing, left=0.0):
    bars = axes.barh(np.arange(len(widths)), widths, left=left, color=colors)
    for bar, crosses in zip(bars, crossing, strict=True):
        bar.set_alpha(1.0 if crosses else PALE)


def _plain_log_ticks(axes, ratios):
    """Powers of two covering `ratios`, as plain numbers and fractions
    ("1/8"): every `step`-th from 1 on, at most about eight, and always
    the thresholds."""
    values = [*ratios, *VARIANCE_RATIO]
    low = math.floor(math.log2(min(values)))
    high = math.ceil(math.log2(max(values)))
    step = max(1, math.ceil((high - low) / 8))
    thresholds = {round(math.log2(bound)) for bound in VARIANCE_RATIO}
    exponents = sorted(
        {*range(0, low - 1, -step), *range(0, high + 1, step), *thresholds}
    )
    ticks = [2.0**e for e in exponents if low <= e <= high]
    axes.set_xticks(ticks, [_plain(tick) for tick in ticks])
    axes.xaxis.set_minor_locator(ticker.NullLocator())
    axes.set_xlim(2.0 ** (low - 0.3), 2.0 ** (high + 0.3))


def _plain(value):
    return f"{value:g}" if value >= 1 else f"1/{1 / value:g}"


def _plot_metrics(axes, report):
    axes.set_title("training vs\ninference mode")
    if report.inference is None:
        bars = axes.bar([0], [report.output_gap], color="tab:purple")
        axes.bar_label(bars, fmt="%.2f")
        axes.axhline(OUTPUT_GAP, color="gray", linestyle="--")
        axes.set_xticks([0], ["output gap (std)"])
        return
    names = [n for n in ("accuracy", "auc") if n in report.inference]
    positions = np.arange(len(names))
    for offset, mode, color in (
        (-0.2, "training", "tab:green"),
        (0.2, "inference", "tab:purple"),
    ):
        values = getattr(report, mode)
        axes.bar(
            positions + offset,
            [values[n] for n in names],
            width=0.4,
            label=f"{mode} mode",
            color=color,
        )
    axes.axhline(report.chance, color="gray", linestyle="--", label="chance")
    axes.set_xticks(positions, names)
    axes.set_ylim(0, 1.05)
