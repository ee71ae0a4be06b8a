"""Tests for `DiagnosisReport.plot` (`frozen_bn._report_figure`): what the
figure says agrees with the report, and it stays readable for 3 and for
150 layers (measured on the drawn text)."""

import itertools
import math
import re

import keras
import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

import frozen_bn
from frozen_bn import _verdict
from frozen_bn._report_figure import MAX_LAYERS, PALE, STATUS_COLORS, status
from frozen_bn.diagnostics import DiagnosisReport, LayerDiagnosis
from tests.helpers import images

matplotlib.use("Agg")


def three_layer_report():
    """A real `diagnose` of three BN layers, on data they were not
    calibrated on."""
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for name in ("a", "b", "c"):
        x = keras.layers.Conv2D(4, 3, padding="same", name=f"conv_{name}")(x)
        x = keras.layers.BatchNormalization(name=f"bn_{name}")(x)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    frozen_bn.recalibrate(model, images(64), verbose=0)
    model.get_layer("bn_a").trainable = False
    return frozen_bn.diagnose(model, 3.0 * images(64, seed=1) + 1.0, verbose=0)


def report_of(count, seed=0):
    """A report of `count` layers with spread-out drift, as `diagnose`
    fills it (flags from `_verdict`)."""
    rng = np.random.default_rng(seed)
    layers = []
    for index in range(count):
        shift = float(rng.uniform(0.0, 2.0))
        ratio = float(2.0 ** rng.uniform(-11.0, 3.0))
        drifted = _verdict.is_drifted(shift, ratio)
        layers.append(
            LayerDiagnosis(
                name=f"stage{index // 10}_block{index % 10}_expand_BN",
                class_name="keras.BatchNormalization",
                trainable=index % 3 != 0,
                freeze_moving_stats=None,
                fit_behaviour="frozen" if index % 3 == 0 else "training",
                mean_shift=shift,
                variance_ratio=ratio,
                drifted=drifted,
                at_risk=drifted and index % 3 != 0,
            )
        )
    return DiagnosisReport(
        samples=64, layers=layers, output_gap=0.7, prediction_disagreement=None
    )


def drift(layer):
    return max(
        layer.mean_shift / _verdict.MEAN_SHIFT,
        abs(math.log2(layer.variance_ratio)),
    )


def layer_panels(figure):
    shift, ratio, _ = figure.axes
    return shift, ratio


@pytest.mark.parametrize("count", [3, 150])
def test_the_most_drifted_layers_are_drawn_worst_first(count):
    report = three_layer_report() if count == 3 else report_of(count)
    shift, ratio = layer_panels(report.plot())
    names = [label.get_text() for label in shift.get_yticklabels()]
    expected = sorted(report.layers, key=drift, reverse=True)[:MAX_LAYERS]
    assert names == [layer.name for layer in expected]
    assert len(shift.patches) == len(ratio.patches) == min(count, MAX_LAYERS)
    if count > MAX_LAYERS:
        assert f"({MAX_LAYERS} of {count})" in shift.get_title(loc="left")


@pytest.mark.parametrize("count", [3, 150])
def test_bar_colours_are_the_reports_flags(count):
    report = three_layer_report() if count == 3 else report_of(count)
    shift, ratio = layer_panels(report.plot())
    by_name = {layer.name: layer for layer in report.layers}
    low, high = _verdict.VARIANCE_RATIO
    names = [label.get_text() for label in shift.get_yticklabels()]
    statuses = set()
    for name, shift_bar, ratio_bar in zip(
        names, shift.patches, ratio.patches, strict=True
    ):
        layer = by_name[name]
        statuses.add(status(layer))
        colour = to_rgb(STATUS_COLORS[status(layer)])
        assert to_rgb(shift_bar.get_facecolor()) == colour
        assert to_rgb(ratio_bar.get_facecolor()) == colour
        # Pale exactly where the layer is within this panel's threshold.
        crosses_shift = layer.mean_shift >= _verdict.MEAN_SHIFT
        crosses_ratio = not low <= layer.variance_ratio <= high
        assert shift_bar.get_alpha() == (1.0 if crosses_shift else PALE)
        assert ratio_bar.get_alpha() == (1.0 if crosses_ratio else PALE)
        assert layer.drifted == (crosses_shift or crosses_ratio)
    if count == 150:
        assert statuses == {"at risk", "drifted"}  # the worst 25 drifted


@pytest.mark.parametrize("count", [3, 150])
def test_variance_ratio_ticks_are_plain_numbers(count):
    report = three_layer_report() if count == 3 else report_of(count)
    _, ratio = layer_panels(report.plot())
    labels = [label.get_text() for label in ratio.get_xticklabels()]
    assert all(re.fullmatch(r"(1/)?\d+", label) for label in labels), labels
    assert {"1/2", "1", "2"} <= set(labels)  # the thresholds and no change
    assert len(labels) <= 11


def drawn_tick_labels(axis):
    """The labels of the ticks within the axis's limits: those drawn."""
    low, high = sorted(axis.get_view_interval())
    return [
        label
        for location, label in zip(
            axis.get_majorticklocs(), axis.get_majorticklabels(), strict=True
        )
        if low <= location <= high and label.get_text()
    ]


@pytest.mark.parametrize("count", [3, 150])
def test_no_text_overlaps_and_the_legend_is_outside_the_axes(count):
    report = three_layer_report() if count == 3 else report_of(count)
    figure = report.plot()
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [
        label
        for axes in figure.axes
        for axis in (axes.xaxis, axes.yaxis)
        for label in drawn_tick_labels(axis)
    ]
    texts += [axes.title for axes in figure.axes if axes.get_title()]
    texts += [axes.xaxis.label for axes in figure.axes]
    boxes = [text.get_window_extent(renderer) for text in texts]
    for first, second in itertools.combinations(range(len(boxes)), 2):
        assert not boxes[first].overlaps(boxes[second]), (
            texts[first].get_text(),
            texts[second].get_text(),
        )
    page = figure.bbox
    for box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 + 1
    legend = figure.legends[0].get_window_extent(renderer)
    for axes in figure.axes:
        assert not legend.overlaps(axes.get_window_extent(renderer))
