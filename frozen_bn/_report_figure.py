"""`DiagnosisReport.plot`: the report as a matplotlib figure.

Imported only when a figure is asked for: matplotlib is optional (the
`plot` extra).
"""

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from frozen_bn._verdict import MEAN_SHIFT, OUTPUT_GAP, VARIANCE_RATIO


def report_figure(report):
    """The `DiagnosisReport` as a figure (see `DiagnosisReport.plot`)."""
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    shift, ratio, metrics = figure.subplots(1, 3)
    layers = report.layers
    names = [layer.name for layer in layers]
    colors = ["tab:red" if layer.drifted else "tab:blue" for layer in layers]
    positions = np.arange(len(names))
    shift.bar(positions, [x.mean_shift for x in layers], color=colors)
    shift.axhline(MEAN_SHIFT, color="gray", linestyle="--")
    shift.set_title("standardized mean shift")
    ratios = np.array([layer.variance_ratio for layer in layers])
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
    _plot_metrics(metrics, report)
    return figure


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
