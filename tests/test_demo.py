"""Tests for `frozen-bn demo`: the quick demo, end to end, on real data.

The Keras 3 settings run on the current backend. The tf_keras TF1
graph-mode setting runs in a subprocess, once: in the tensorflow-backend run.
"""

import contextlib
import io
import os

import keras
import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from frozen_bn import cli, demo  # noqa: E402
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
    return (
        100
        * demo.summarize(results, setting, implementation, mode, "accuracy")[0]
    )


def bn_class(results, setting, implementation):
    (found,) = {
        r["bn_class"]
        for r in results
        if r["setting"] == setting and r["implementation"] == implementation
    }
    return found


@graph_mode_only
def test_graph_mode_stock_gap_is_large(quick):
    results = quick[0]
    assert demo.gap(results, "tf_keras_graph", "stock") >= 15
    # The seed post's signature: Dynamic and Static=0 agree.
    assert accuracy(results, "tf_keras_graph", "stock", "dynamic") == (
        accuracy(results, "tf_keras_graph", "stock", "inference")
    )


@graph_mode_only
def test_graph_mode_patched_gap_is_small(quick):
    assert abs(demo.gap(quick[0], "tf_keras_graph", "patched")) <= 3


@graph_mode_only
def test_graph_mode_runs_use_the_v1_classes(quick):
    results = quick[0]
    assert bn_class(results, "tf_keras_graph", "stock") == (
        "tf_keras.src.layers.normalization.batch_normalization_v1."
        "BatchNormalization"
    )
    assert bn_class(results, "tf_keras_graph", "patched") == (
        "frozen_bn.tf_keras.BatchNormalizationV1"
    )


def test_graph_mode_is_skipped_when_not_asked_for(quick):
    settings = {r["setting"] for r in quick[0]}
    assert ("tf_keras_graph" in settings) == GRAPH_MODE


@pytest.mark.parametrize("implementation", ["patched", "recalibrated"])
def test_keras3_guide_pattern_patched_gap_is_small(quick, implementation):
    assert abs(demo.gap(quick[0], "keras3_guide", implementation)) <= 3


def test_keras3_guide_pattern_runs_use_the_expected_classes(quick):
    results = quick[0]
    stock = "keras.src.layers.normalization.batch_normalization."
    assert bn_class(results, "keras3_guide", "stock") == (
        f"{stock}BatchNormalization"
    )
    assert bn_class(results, "keras3_guide", "patched") == (
        "frozen_bn.layers.BatchNormalization"
    )


@pytest.mark.parametrize("mode", demo.MODES)
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


@pytest.mark.parametrize("mode", demo.MODES)
def test_keras3_trainable_false_stock_and_patched_agree(quick, mode):
    stock = accuracy(quick[0], "keras3_trainable", "stock", mode)
    patched = accuracy(quick[0], "keras3_trainable", "patched", mode)
    assert abs(stock - patched) <= demo.AGREEMENT_POINTS


def test_every_result_has_every_metric_in_range(quick):
    for result in quick[0]:
        assert result["seed"] in SEEDS
        assert set(result["modes"]) == set(demo.MODES)
        for values in result["modes"].values():
            assert values["loss"] > 0
            for name in ("accuracy", "auc", "positive"):
                assert 0 <= values[name] <= 1


def test_table_conclusions_and_figure_path_are_printed(quick):
    _, printed, figure, _ = quick
    for label in demo.MODE_LABELS.values():
        assert label in printed
    assert printed.count("  -> ") == (3 if GRAPH_MODE else 2)
    assert f"figure: {figure}" in printed
    with open(figure, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_pretrained_weights_are_cached_and_reused(quick):
    cache_dir = quick[3]
    (name,) = os.listdir(os.path.join(cache_dir))
    path = os.path.join(cache_dir, name)
    stamp = os.stat(path).st_mtime_ns
    weights, found = demo.pretrained_weights(0, demo.QUICK, cache_dir)
    assert found == path
    assert os.stat(path).st_mtime_ns == stamp
    base = demo.build_base(keras, demo.QUICK.bn_momentum)
    base.set_weights(weights)  # the architecture's weights, in order
    assert len(weights) == len(base.weights)


def test_data_splits_cover_digits_and_target_is_shifted():
    data = demo.load_data(0)
    x_source, y_source = data["source"]
    x_train, y_train = data["target_train"]
    x_test, y_test = data["target_test"]
    assert len(x_source) + len(x_train) + len(x_test) == 1797
    assert x_source.shape[1:] == (demo.IMAGE_SIZE, demo.IMAGE_SIZE, 1)
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
    assert args.run is cli._run_demo
    assert (args.quick, args.seeds, args.retrain) == (True, [0, 1], False)
    assert (args.out, args.cache_dir) == ("f.png", None)


def test_default_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert demo.default_cache_dir() == str(tmp_path / "frozen_bn")
