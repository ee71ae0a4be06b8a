"""Tests for `frozen-bn demo`: the quick demo, end to end, on real data.

The Keras 3 settings run on the current backend. The tf_keras TF1
graph-mode setting runs in a subprocess, once: in the tensorflow-backend run.
"""

import contextlib
import io
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

pytest.importorskip("sklearn")

from frozen_bn import cli, demo  # noqa: E402
from frozen_bn.demo import (  # noqa: E402
    data,
    models,
    protocol,
    report,
    runs,
    verdict,
)
from tests.guide_pattern import HONOURS_TRAINING_FALSE  # noqa: E402

GRAPH_MODE = keras.backend.backend() == "tensorflow"
graph_mode_only = pytest.mark.skipif(
    not GRAPH_MODE, reason="the graph-mode run happens in the tensorflow run"
)
SEEDS = (0,)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The quick demo's results, printed text, figure path and cache dir."""
    directory = tmp_path_factory.mktemp("demo")
    cache_dir = str(directory / "cache")
    figure = str(directory / "figure.png")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        results = demo.run_demo(
            quick=True,
            seeds=SEEDS,
            out=figure,
            cache_dir=cache_dir,
            graph_mode=GRAPH_MODE,
        )
    return results, printed.getvalue(), figure, cache_dir


def accuracy(results, setting, implementation, mode):
    mean, _ = report.summarize(
        results, setting, implementation, mode, "accuracy"
    )
    return 100 * mean


def runs_of(results, setting, implementation):
    return [
        r
        for r in results
        if r["setting"] == setting and r["implementation"] == implementation
    ]


def bn_class(results, setting, implementation):
    (found,) = {
        r["bn_class"] for r in runs_of(results, setting, implementation)
    }
    return found


@graph_mode_only
def test_graph_mode_stock_gap_is_large(quick):
    results = quick[0]
    assert report.gap(results, "tf_keras_graph", "stock") >= 15
    # The 2018 experiment's signature: Dynamic and Static=0 agree.
    assert accuracy(results, "tf_keras_graph", "stock", "dynamic") == (
        accuracy(results, "tf_keras_graph", "stock", "inference")
    )


@graph_mode_only
def test_graph_mode_patched_gap_is_small(quick):
    assert (
        abs(report.gap(quick[0], "tf_keras_graph", "patched"))
        <= verdict.AGREEMENT_POINTS
    )


@graph_mode_only
def test_graph_mode_runs_use_the_v1_classes(quick):
    results = quick[0]
    assert bn_class(results, "tf_keras_graph", "stock") == (
        "tf_keras.BatchNormalizationV1"
    )
    assert bn_class(results, "tf_keras_graph", "patched") == (
        "frozen_bn.tf_keras.BatchNormalizationV1"
    )


def test_graph_mode_is_skipped_when_not_asked_for(quick):
    settings = {r["setting"] for r in quick[0]}
    assert ("tf_keras_graph" in settings) == GRAPH_MODE


@pytest.mark.parametrize("implementation", ["patched", "recalibrated"])
def test_keras3_guide_pattern_patched_gap_is_small(quick, implementation):
    assert (
        abs(report.gap(quick[0], "keras3_guide", implementation))
        <= verdict.AGREEMENT_POINTS
    )


def test_keras3_guide_pattern_runs_use_the_expected_classes(quick):
    results = quick[0]
    assert bn_class(results, "keras3_guide", "stock") == (
        "keras.BatchNormalization"
    )
    assert bn_class(results, "keras3_guide", "patched") == (
        "frozen_bn.BatchNormalization"
    )


@pytest.mark.parametrize("mode", protocol.MODES)
def test_keras3_guide_pattern_stock_run_follows_the_release(quick, mode):
    stock = accuracy(quick[0], "keras3_guide", "stock", mode)
    # Keras 3.16 keeps the recorded training=False: stock freezes the base's
    # statistics as frozen_bn does. Earlier releases override it: the base
    # trains as if it were never called with training=False.
    same_as = (
        ("keras3_guide", "patched")
        if HONOURS_TRAINING_FALSE
        else ("keras3_trainable", "stock")
    )
    assert abs(stock - accuracy(quick[0], *same_as, mode)) <= 0.5


def test_keras3_trainable_false_patched_run_reproduces_the_stock_run(quick):
    # Where the stock layer is right, frozen_bn's layer trains and predicts
    # as it does: same seed, same weights, so the same metrics.
    (stock,) = runs_of(quick[0], "keras3_trainable", "stock")
    (patched,) = runs_of(quick[0], "keras3_trainable", "patched")
    assert set(patched["modes"]) == set(protocol.MODES)
    for mode, metrics in stock["modes"].items():
        for name, value in metrics.items():
            assert patched["modes"][mode][name] == pytest.approx(
                value, rel=1e-5
            ), (mode, name)


def test_evaluation_matches_keras_metrics_and_sklearn_auc():
    from sklearn.metrics import roc_auc_score

    base = models.build_base(keras, protocol.QUICK.bn_momentum)
    model = models.with_head(keras, base, 1, "sigmoid")
    x, y = data.load_data(0)["target_test"]
    snapshot = model.get_weights()
    # The base trains, so the modes differ: its moving statistics are the
    # initial ones, the target images' are not.
    outputs = {
        "dynamic": model.predict(x, batch_size=32, verbose=0),
        "inference": model(x, training=False),
        "training": model(x, training=True),
    }
    model.set_weights(snapshot)

    found = runs.evaluate(keras, model, x, y, batch_size=32)

    for weight, before in zip(model.get_weights(), snapshot, strict=True):
        np.testing.assert_array_equal(weight, before)
    assert set(found) == set(protocol.MODES)
    labels = y[:, None]
    for mode, output in outputs.items():
        p = keras.ops.convert_to_numpy(output)
        reference = {
            "loss": keras.losses.BinaryCrossentropy()(labels, p),
            "accuracy": keras.metrics.BinaryAccuracy()(labels, p),
            "auc": roc_auc_score(y, p[:, 0]),
            # Keras's threshold: the accuracy against all-positive labels.
            "positive_rate": keras.metrics.BinaryAccuracy()(
                np.ones_like(labels), p
            ),
        }
        for name, value in reference.items():
            assert found[mode][name] == pytest.approx(
                float(keras.ops.convert_to_numpy(value)), rel=1e-5
            ), (mode, name)
    # A swap of the modes shows only where their outputs differ.
    assert not np.allclose(
        keras.ops.convert_to_numpy(outputs["training"]),
        keras.ops.convert_to_numpy(outputs["inference"]),
        atol=1e-3,
    )


def test_table_conclusions_and_figure_path_are_printed(quick):
    pytest.importorskip("matplotlib")
    _, printed, figure, _ = quick
    for label in protocol.MODE_LABELS.values():
        assert label in printed
    assert printed.count("  -> ") == (3 if GRAPH_MODE else 2)
    assert f"figure: {figure}" in printed
    with open(figure, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_table_is_printed_and_no_figure(quick, tmp_path):
    results = quick[0]
    figure = tmp_path / "figure.png"
    code = (
        "import json, sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from frozen_bn import demo\n"
        f"demo.show(json.load(sys.stdin), {str(figure)!r})\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(results),
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert report.format_report(results) in shown.stdout
    assert shown.stdout.rstrip().endswith(
        "no figure: the figure needs matplotlib: pip install matplotlib"
    )
    assert not figure.exists()


def test_pretrained_weights_are_cached_and_reused(quick):
    cache_dir = quick[3]
    (name,) = os.listdir(os.path.join(cache_dir))
    path = os.path.join(cache_dir, name)
    stamp = os.stat(path).st_mtime_ns
    weights, found = models.pretrained_weights(0, protocol.QUICK, cache_dir)
    assert found == path
    assert os.stat(path).st_mtime_ns == stamp
    base = models.build_base(keras, protocol.QUICK.bn_momentum)
    base.set_weights(weights)  # the architecture's weights, in order
    assert len(weights) == len(base.weights)


def test_data_splits_cover_digits_and_target_is_shifted():
    splits = data.load_data(0)
    x_source, y_source = splits["source"]
    x_train, y_train = splits["target_train"]
    x_test, y_test = splits["target_test"]
    assert len(x_source) + len(x_train) + len(x_test) == 1797
    assert x_source.shape[1:] == (protocol.IMAGE_SIZE, protocol.IMAGE_SIZE, 1)
    assert set(np.unique(y_source)) == set(range(10))
    assert set(np.unique(y_train)) == {0.0, 1.0}
    # Pixels are in [0, 1] in the source, in [0.5, 0.9] in the target.
    assert x_source.min() == 0 and x_source.max() == 1
    np.testing.assert_allclose(
        [x_test.min(), x_test.max()], [0.5, 0.9], atol=1e-6
    )


def test_demo_command_line_options():
    args = cli.build_parser().parse_args(
        ["demo", "--quick", "--seeds", "0", "1", "--out", "f.png"]
    )
    assert args.run is cli._demo.run
    assert (args.quick, args.seeds, args.retrain) == (True, [0, 1], False)
    assert (args.out, args.cache_dir) == ("f.png", None)


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo.default_cache_dir() == str(tmp_path / "frozen_bn")


def test_precise_bn_run_trains_as_the_patched_run_and_its_modes_agree(quick):
    (patched,) = runs_of(quick[0], "keras3_trainable", "patched")
    (precise,) = runs_of(quick[0], "keras3_trainable", "precise")
    # PreciseBN gives training its own statistics back: the same weights,
    # so the same training-mode results (batch statistics).
    for name, value in patched["modes"]["training"].items():
        assert precise["modes"]["training"][name] == pytest.approx(
            value, rel=1e-5
        )
    # Inference runs with the statistics it measured.
    assert precise["modes"]["inference"]["loss"] != pytest.approx(
        patched["modes"]["inference"]["loss"], rel=1e-5
    )
    assert (
        abs(report.gap(quick[0], "keras3_trainable", "precise"))
        <= verdict.AGREEMENT_POINTS
    )


# The closing words


def closing_text(printed, title):
    """The lines under the setting titled `title`, after its table, as one
    paragraph (the printed lines are wrapped)."""
    section = printed.split(title, 1)[1].split("\n\n", 1)[0]
    after_table = section.split("  -> ", 1)[1]
    return " ".join(after_table.split())


def title_of(name):
    return next(s.title for s in protocol.SETTINGS if s.name == name)


def test_one_seed_prints_no_spread_and_several_do(quick):
    results, printed, _, _ = quick
    assert "±" not in printed
    again = [dict(result, seed=result["seed"] + 1) for result in results]
    assert "±" in report.format_report(results + again)


def test_guide_pattern_closing_lines_say_why_and_what_recovers(quick):
    results = quick[0]
    text = closing_text(quick[1], title_of("keras3_guide"))

    def inference(implementation):
        return accuracy(results, "keras3_guide", implementation, "inference")

    assert (
        "the base keeps the statistics of the source digits, which do not "
        f"fit the shifted target: {inference('patched'):.1f}% in inference "
        f"mode against stock's {inference('stock'):.1f}%"
    ) in text
    assert (
        f"(frozen_bn.recalibrate, AdaBN): {inference('recalibrated'):.1f}%"
        in text
    )
    assert "PreciseBN" in text
    if HONOURS_TRAINING_FALSE:
        assert "this Keras keeps the recorded training=False" in text
    else:
        assert "overrides the recorded training=False" in text
        assert "silently ignored" in text
        higher = inference("patched") < inference("stock")
        assert ("stock scores higher only because" in text) == higher


def test_trainable_false_closing_lines_name_the_precise_bn_result(quick):
    results = quick[0]
    text = closing_text(quick[1], title_of("keras3_trainable"))
    precise = accuracy(results, "keras3_trainable", "precise", "inference")
    assert "stock: right here" in text
    assert "PreciseBN callback" in text
    assert f"{precise:.1f}% in inference mode" in text


@graph_mode_only
def test_graph_mode_closing_lines_name_the_2018_bug(quick):
    results = quick[0]
    text = closing_text(quick[1], title_of("tf_keras_graph"))
    gap = report.gap(results, "tf_keras_graph", "stock")
    assert f"inference mode is {gap:.1f} points below training mode" in text
    assert "This is the 2018 bug" in text
    assert "frozen_bn: frozen layers use their stored statistics" in text
