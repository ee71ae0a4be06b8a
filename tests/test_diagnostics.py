"""Tests for `frozen_bn.diagnose`, its report and CLI (every backend)."""

import json
import re

import keras
import matplotlib
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _fit_behaviour, _verdict, cli
from frozen_bn._walk import batch_norm_layers
from tests import keras_hub_models
from tests.guide_pattern import (
    HONOURS_TRAINING_FALSE,
    HONOURS_TRAINING_NONE,
    LEAKS_TRAINING_FALSE,
    SPREADS_TRAINING_DEFAULT,
    augmented_conv_net,
    guide_model,
)
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    to_numpy,
)

matplotlib.use("Agg")


def separable(count=256, shift=0.0, seed=0):
    """Two classes apart on feature 0; `shift` moves every sample."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    x = rng.normal(0.0, 0.5, (count, 4))
    x[:, 0] += np.where(y == 1, 1.0, -1.0) + shift
    return x.astype("float32"), y


def seed_classifier(head=None):
    """BN -> sigmoid(2 * feature 0): statistics recorded on unshifted data.

    On data shifted by +3 its inference-mode outputs all exceed 0.5 (chance
    accuracy, the ranking intact), while batch statistics undo the shift:
    the symptom of the 2018 "Keras BN layer is broken" experiment.
    """
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(name="bn")(inputs)
    outputs = head or keras.layers.Dense(1, activation="sigmoid", name="head")
    model = keras.Model(inputs, outputs(x))
    kernel = np.array([[2.0], [0.0], [0.0], [0.0]], "float32")
    model.get_layer(outputs.name).set_weights([kernel, np.zeros(1, "float32")])
    frozen_bn.recalibrate(model, separable()[0], verbose=0)
    return model


def conv_net():
    """Conv -> BN -> Conv -> BN -> Dropout -> Dense, calibrated on `images`."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    frozen_bn.recalibrate(model, images(64), verbose=0)
    return model


def drifted(report):
    return [layer.name for layer in report.layers if layer.drifted]


# The verdict


def test_seed_symptom_is_flagged_with_the_layer_named():
    x, y = separable(shift=3.0)
    report = frozen_bn.diagnose(seed_classifier(), x, y, verbose=0)

    assert report.flagged
    assert report.inference["accuracy"] < report.chance + 0.1
    assert report.inference["auc"] > 0.95
    assert report.training["accuracy"] > 0.9
    assert "close to chance" in report.verdict
    assert [x.name for x in report.layers if x.at_risk] == ["bn"]
    assert "recalibrate" in report.fix


def test_healthy_model_is_not_flagged():
    x, y = separable(shift=0.0, seed=1)
    report = frozen_bn.diagnose(seed_classifier(), x, y, verbose=0)

    assert not report.flagged
    assert drifted(report) == []
    assert report.fix == ""
    assert "No sign" in report.verdict


def test_shifted_inputs_flag_the_first_layer():
    report = frozen_bn.diagnose(conv_net(), 0.4 * images(64) + 0.5, verbose=0)

    assert report.flagged
    assert "bn_a" in drifted(report)
    assert report.layers[0].variance_ratio < 0.5


def test_only_the_layer_with_stale_statistics_is_named():
    model = conv_net()
    layer = model.get_layer("bn_b")
    layer.moving_variance.assign(to_numpy(layer.moving_variance) * 10.0)

    report = frozen_bn.diagnose(model, images(64), verbose=0)

    assert drifted(report) == ["bn_b"]
    assert report.flagged


def test_calibrated_conv_net_is_not_flagged():
    report = frozen_bn.diagnose(conv_net(), images(64), verbose=0)

    assert drifted(report) == []
    assert report.output_gap < _verdict.OUTPUT_GAP


def test_layer_statistics_match_numpy():
    model = conv_net()
    x = 0.4 * images(64) + 0.5
    features = keras.Model(model.inputs, model.get_layer("conv_a").output)
    values = features.predict(x, verbose=0).astype("float64")
    layer = model.get_layer("bn_a")
    moving_mean = to_numpy(layer.moving_mean).astype("float64")
    moving_variance = to_numpy(layer.moving_variance).astype("float64")
    eps = layer.epsilon
    shift = (values.mean((0, 1, 2)) - moving_mean) / np.sqrt(
        moving_variance + eps
    )
    ratio = (values.var((0, 1, 2)) + eps) / (moving_variance + eps)

    found = frozen_bn.diagnose(model, x, verbose=0).layers[0]

    np.testing.assert_allclose(
        found.mean_shift, np.sqrt(np.mean(shift**2)), 1e-4
    )
    np.testing.assert_allclose(
        found.variance_ratio, np.exp(np.mean(np.log(ratio))), 1e-4
    )


# Metrics


def assert_multiclass_metrics(report, logits, y):
    """Inference accuracy and cross-entropy as numpy computes them."""
    logits = logits.astype("float64")
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert report.task == "multiclass"
    assert report.inference["accuracy"] == np.mean(logits.argmax(1) == y)
    np.testing.assert_allclose(
        report.inference["loss"],
        -np.mean(np.log(probabilities[np.arange(len(y)), y])),
        1e-4,
    )


def training_outputs(model, x, batch_size=32):
    """Training-mode outputs from a copy of `model`, batch by batch."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return np.concatenate(
        [
            to_numpy(copy(x[i : i + batch_size], training=True))
            for i in range(0, len(x), batch_size)
        ]
    )


def pairwise_auc(y, p):
    positives, negatives = p[y == 1], p[y == 0]
    wins = positives[:, None] > negatives[None, :]
    ties = positives[:, None] == negatives[None, :]
    return np.mean(wins + 0.5 * ties)


def test_binary_metrics_match_numpy_on_model_outputs():
    model = seed_classifier()
    x, y = separable(shift=3.0)
    inference = model.predict(x, verbose=0)[:, 0]
    training = training_outputs(model, x)[:, 0]

    report = frozen_bn.diagnose(model, x, y, verbose=0)

    assert report.task == "binary"
    assert report.chance == max(y.mean(), 1 - y.mean())
    for found, p in (
        (report.inference, inference),
        (report.training, training),
    ):
        assert found["accuracy"] == np.mean((p > 0.5) == y)
        assert found["positive_rate"] == np.mean(p > 0.5)
        np.testing.assert_allclose(found["auc"], pairwise_auc(y, p), 1e-12)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        np.testing.assert_allclose(found["loss"], loss, 1e-4)


def test_logit_outputs_are_read_as_logits():
    model = seed_classifier(keras.layers.Dense(1, name="logit"))
    x, y = separable(shift=3.0)
    logits = model.predict(x, verbose=0)[:, 0]

    report = frozen_bn.diagnose(model, x, y, verbose=0)

    assert report.inference["accuracy"] == np.mean((logits > 0) == y)
    assert report.flagged


def test_multiclass_metrics_match_numpy():
    model = conv_net()
    x = images(64)
    y = np.arange(len(x)) % 3
    logits = model.predict(x, verbose=0)

    report = frozen_bn.diagnose(model, x, y, verbose=0)

    assert_multiclass_metrics(report, logits, y)
    assert report.chance == pytest.approx(22 / 64)
    assert any("dropout" in note for note in report.notes)


# keras-hub backbones (a 4-D feature map out, BNs inside custom blocks in
# MobileNetV3) and an ImageClassifier task


def batch_norm_inputs(model, x, monkeypatch):
    """Each BN's inputs in one eager inference-mode call, as float64 numpy.

    Independent of frozen_bn's probe: the class's `call` is wrapped (the
    probe wraps instances'), which reaches BNs inside custom layers too.
    """
    inputs = {}
    call = keras.layers.BatchNormalization.call

    def recording_call(self, x, *args, **kwargs):
        inputs[id(self)] = to_numpy(x).astype("float64")
        return call(self, x, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(keras.layers.BatchNormalization, "call", recording_call)
        model(x, training=False)
    return inputs


@keras_hub_models.requires_keras_hub
@pytest.mark.parametrize("name", sorted(keras_hub_models.BACKBONES))
def test_keras_hub_backbone_rows_match_numpy(name, monkeypatch):
    model = keras_hub_models.shared_backbone(name)
    x = np.random.default_rng(11).normal(0.5, 2.0, (8, 32, 32, 3))
    x = x.astype("float32")
    before = all_weights(model)

    report = frozen_bn.diagnose(model, x, batch_size=4, verbose=0)

    assert_weights_bitwise_equal(before, all_weights(model))
    layers = batch_norm_layers(model)
    assert [row.name for row in report.layers] == [bn.name for bn in layers]
    values = batch_norm_inputs(model, x, monkeypatch)
    for row, layer in zip(report.layers, layers, strict=True):
        moving_mean = to_numpy(layer.moving_mean).astype("float64")
        moving_variance = to_numpy(layer.moving_variance).astype("float64")
        eps = layer.epsilon
        axes = (0, 1, 2)
        mean, variance = (
            values[id(layer)].mean(axes),
            values[id(layer)].var(axes),
        )
        shift = (mean - moving_mean) / np.sqrt(moving_variance + eps)
        ratio = (variance + eps) / (moving_variance + eps)
        np.testing.assert_allclose(
            row.mean_shift, np.sqrt(np.mean(shift**2)), 1e-4, err_msg=row.name
        )
        # Float32 moments take the variance as E[x^2] - E[x]^2 (as Keras's
        # BN does), which loses mean^2 / variance times float32 precision:
        # deep layers of these untrained backbones reach 1000 or more.
        condition = np.max(mean**2 / (variance + eps))
        np.testing.assert_allclose(
            row.variance_ratio,
            np.exp(np.mean(np.log(ratio))),
            1e-4 + 1e-6 * condition,
            err_msg=row.name,
        )
    # A feature map has no predicted class: no disagreement is reported.
    assert report.task is None
    assert report.prediction_disagreement is None
    assert "predictions differ" not in report.to_text()


@keras_hub_models.requires_keras_hub
def test_keras_hub_classifier_is_diagnosed_on_preprocessed_images():
    # The preprocessor resizes 48x48 images to 32x32 and scales them, as
    # `predict()` does; the model itself takes only 32x32 inputs.
    classifier = keras_hub_models.image_classifier(scale=1 / 255)
    rng = np.random.default_rng(12)
    x = rng.uniform(0, 255, (12, 48, 48, 3)).astype("float32")
    y = np.arange(12) % 3
    logits = classifier.predict(x, batch_size=4, verbose=0)

    report = frozen_bn.diagnose(classifier, x, y, batch_size=4, verbose=0)

    assert_multiclass_metrics(report, logits, y)
    assert [row.name for row in report.layers] == [
        layer.name for layer in batch_norm_layers(classifier)
    ]
    assert 0.0 <= report.prediction_disagreement <= 1.0


# No mutation, behaviour under fit()


def test_diagnose_leaves_the_model_bitwise_unchanged():
    model = conv_net()
    model.get_layer("bn_a").trainable = False
    frozen_bn.patch_model(model, freeze_moving_stats=False, inplace=True)
    model.get_layer("bn_b").freeze_moving_stats = True
    before = all_weights(model)
    flags = [(type(x), x.trainable) for x in model.layers]

    frozen_bn.diagnose(model, 0.4 * images(64) + 0.5, np.zeros(64), verbose=0)

    assert_weights_bitwise_equal(before, all_weights(model))
    assert [(type(x), x.trainable) for x in model.layers] == flags
    assert model.get_layer("bn_b").freeze_moving_stats is True


def guide_pattern():
    """The guide's `base(x, training=False)`, with the base unfrozen."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.BatchNormalization(name="base_bn")(x)
    base = keras.Model(inputs, x, name="base")
    outer = keras.Input((8, 8, 3))
    x = base(outer, training=False)
    x = keras.layers.BatchNormalization(name="head_bn")(x)
    x = keras.layers.BatchNormalization(name="frozen_bn", trainable=False)(x)
    return keras.Model(outer, keras.layers.GlobalAveragePooling2D()(x))


def behaviours(model):
    return {x.name: b for x, b in _fit_behaviour.fit_behaviours(model)}


# What fit() does with the guide's training=False depends on the release.
BASE_BEHAVIOUR = (
    _fit_behaviour.FROZEN
    if HONOURS_TRAINING_FALSE
    else _fit_behaviour.OVERRIDDEN
)
HEAD_BEHAVIOUR = (
    _fit_behaviour.SWITCHED_OFF
    if LEAKS_TRAINING_FALSE
    else _fit_behaviour.BATCH_STATISTICS
)


def test_fit_behaviour_names_the_guide_pattern_trap():
    assert behaviours(guide_pattern()) == {
        "base_bn": BASE_BEHAVIOUR,
        "head_bn": HEAD_BEHAVIOUR,
        "frozen_bn": _fit_behaviour.FROZEN,
    }


def test_patched_guide_pattern_is_frozen_under_fit():
    patched = frozen_bn.patch_model(guide_pattern())
    assert behaviours(patched)["base_bn"] == _fit_behaviour.FROZEN
    assert behaviours(patched)["head_bn"] == _fit_behaviour.BATCH_STATISTICS


def test_trapped_drifted_layer_recommends_patch_model():
    report = frozen_bn.diagnose(guide_pattern(), images(64), verbose=0)

    at_risk = {x.name: x.fit_behaviour for x in report.layers if x.at_risk}
    expected = {"head_bn": HEAD_BEHAVIOUR}
    if not HONOURS_TRAINING_FALSE:
        expected["base_bn"] = _fit_behaviour.OVERRIDDEN
    assert at_risk == expected
    assert "patch_model" in report.fix


def test_report_names_the_layers_a_leak_switches_off():
    model = guide_pattern()

    report = frozen_bn.diagnose(model, images(64), verbose=0)
    patched = frozen_bn.diagnose(
        frozen_bn.patch_model(model), images(64), verbose=0
    )

    assert report.switched_off == (["head_bn"] if LEAKS_TRAINING_FALSE else [])
    assert (
        any("not train head_bn." in x for x in report.reasons)
        is LEAKS_TRAINING_FALSE
    )
    assert patched.switched_off == []
    assert {x.name: x.fit_behaviour for x in patched.layers} == {
        "base_bn": _fit_behaviour.FROZEN,
        "head_bn": _fit_behaviour.BATCH_STATISTICS,
        "frozen_bn": _fit_behaviour.FROZEN,
    }


def test_fit_behaviour_follows_a_recorded_none_as_the_release_does():
    switched = (
        _fit_behaviour.SWITCHED_OFF
        if HONOURS_TRAINING_NONE
        else _fit_behaviour.BATCH_STATISTICS
    )

    assert behaviours(guide_model(recorded=None)) == {
        "before_bn": _fit_behaviour.BATCH_STATISTICS,
        "base_bn": switched,
        "after_bn": switched,
    }


def test_report_names_the_bn_a_plain_call_trains_and_its_cause():
    report = frozen_bn.diagnose(augmented_conv_net(), images(32), verbose=0)

    expected = [("bn", "flip")] if SPREADS_TRAINING_DEFAULT else []
    assert report.plain_call_training == expected
    assert "flip" in report.gap_sources
    assert any("bn (after flip)" in r for r in report.reasons) is bool(expected)


def test_a_gap_from_dropout_alone_does_not_blame_batch_norm():
    inputs = keras.Input((16,))
    x = keras.layers.Dense(16, name="dense")(inputs)
    x = keras.layers.Dropout(0.9, name="dropout")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
    x = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")

    report = frozen_bn.diagnose(model, x, verbose=0)

    assert report.output_gap >= _verdict.OUTPUT_GAP
    assert report.gap_sources == ["dropout"]
    assert report.verdict.startswith("Training and inference mode differ.")
    assert "the gap comes from dropout" in report.fix


def test_note_on_dropout_agrees_with_what_fit_will_do():
    report = frozen_bn.diagnose(guide_model(), np.ones((32, 4)), verbose=0)

    [note] = [n for n in report.notes if "after_dropout" in n]
    assert ("fit() will run after_dropout in inference mode" in note) is (
        LEAKS_TRAINING_FALSE
    )


# The report


def test_to_dict_is_json_serializable():
    x, y = separable(shift=3.0)
    data = frozen_bn.diagnose(seed_classifier(), x, y, verbose=0).to_dict()

    assert json.loads(json.dumps(data))["layers"][0]["name"] == "bn"
    assert data["flagged"] is True
    assert data["verdict"].startswith("Out-of-scale")


def test_under_fit_is_a_deprecated_read_only_alias_of_fit_behaviour():
    report = frozen_bn.diagnose(conv_net(), images(), verbose=0)
    layer = report.layers[0]

    with pytest.warns(DeprecationWarning, match="Use `fit_behaviour`"):
        old = layer.under_fit
    assert old == layer.fit_behaviour == _fit_behaviour.BATCH_STATISTICS
    with pytest.raises(AttributeError):
        layer.under_fit = _fit_behaviour.FROZEN
    row = report.to_dict()["layers"][0]
    assert row["fit_behaviour"] == _fit_behaviour.BATCH_STATISTICS
    assert "under_fit" not in row


def test_to_text_is_an_aligned_table():
    text = frozen_bn.diagnose(conv_net(), images(64), verbose=0).to_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("layer "))
    rows = [line for line in lines if line.startswith("bn_")]

    assert len(rows) == 2
    column = header.index("under fit()")
    assert all(row[column:].startswith("batch statistics") for row in rows)


def test_plot_has_one_drift_bar_per_layer():
    x, y = separable(shift=3.0)
    figure = frozen_bn.diagnose(conv_net(), images(64), verbose=0).plot()
    shift, ratio, metrics = figure.axes

    assert isinstance(figure, matplotlib.figure.Figure)
    assert len(shift.patches) == len(ratio.patches) == 2
    names = sorted(t.get_text() for t in shift.get_yticklabels())
    assert names == ["bn_a", "bn_b"]
    labelled = frozen_bn.diagnose(seed_classifier(), x, y, verbose=0).plot()
    assert len(labelled.axes[2].patches) == 4  # accuracy, auc x 2 modes


# Bad input


def test_not_a_model_raises_type_error():
    with pytest.raises(TypeError, match="Expected `model` to be a keras"):
        frozen_bn.diagnose("model.keras", images(64))


def test_inputs_of_the_wrong_shape_raise():
    with pytest.raises(
        ValueError,
        match=r"Expected each batch of `x` to fit the inputs of `model` .*"
        r"rank 4 .*Received: batch 0 of shape \(32, 4\)",
    ):
        frozen_bn.diagnose(conv_net(), np.zeros((64, 4), "float32"))


def test_labels_of_the_wrong_length_raise():
    with pytest.raises(ValueError, match=r"one label per sample \(64\)"):
        frozen_bn.diagnose(conv_net(), images(64), np.zeros(10), verbose=0)


def test_non_binary_labels_for_one_output_raise():
    x, _ = separable()
    with pytest.raises(ValueError, match="0/1 labels"):
        frozen_bn.diagnose(seed_classifier(), x, np.full(256, 2), verbose=0)


# tf_keras


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf_keras needs TF"
)
def test_tf_keras_stock_v1_model_is_diagnosed():
    tf_keras = pytest.importorskip("tf_keras")
    from tests.tf_keras_models import STOCK_V1

    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3)(inputs)
    x = STOCK_V1(name="v1_bn", trainable=False)(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(x))
    before = [w.numpy() for w in model.weights]

    report = frozen_bn.diagnose(model, images(64), verbose=0)

    assert report.layers[0].fit_behaviour == _fit_behaviour.STOCK_V1
    assert report.layers[0].class_name == "tf_keras.BatchNormalizationV1"
    assert report.layers[0].at_risk
    assert report.output_gap > _verdict.OUTPUT_GAP
    assert "patch_model" in report.fix
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(new.numpy(), old)


# CLI


def saved_files(tmp_path):
    model = seed_classifier()
    model.save(tmp_path / "model.keras")
    x, y = separable(shift=3.0)
    np.savez(tmp_path / "data.npz", x=x, y=y)
    return str(tmp_path / "model.keras"), str(tmp_path / "data.npz")


def test_cli_inspect_lists_layers_and_their_mode(tmp_path, capsys):
    guide_pattern().save(tmp_path / "guide.keras")

    assert cli.main(["inspect", str(tmp_path / "guide.keras")]) == 0

    out = capsys.readouterr().out
    assert "3 BatchNormalization layers" in out
    base_line = next(line for line in out.splitlines() if "base_bn" in line)
    assert base_line.endswith(BASE_BEHAVIOUR)
    assert "keras.BatchNormalization" in base_line
    head_line = next(line for line in out.splitlines() if "head_bn" in line)
    assert head_line.endswith(HEAD_BEHAVIOUR)
    leak_line = "(Keras 3.16): head_bn\n"
    assert (leak_line in out) is LEAKS_TRAINING_FALSE


def cells(lines, name):
    """The cells of the table row of layer `name` among `lines`."""
    line = next(line for line in lines if line.startswith(name + " "))
    return re.split(r"\s{2,}", line)


def test_cli_inspect_and_the_report_show_the_same_layer_cells(tmp_path, capsys):
    inputs = keras.Input((4,))
    x = frozen_bn.BatchNormalization(name="ours", freeze_moving_stats=True)(
        inputs
    )
    model = keras.Model(
        inputs, keras.layers.BatchNormalization(name="stock")(x)
    )
    model.save(tmp_path / "mixed.keras")
    expected = {
        "ours": [
            "ours",
            "frozen_bn.BatchNormalization",
            "True",
            "True",
            _fit_behaviour.FROZEN,
        ],
        "stock": [
            "stock",
            "keras.BatchNormalization",
            "True",
            "-",
            _fit_behaviour.BATCH_STATISTICS,
        ],
    }

    assert cli.main(["inspect", str(tmp_path / "mixed.keras")]) == 0
    inspected = capsys.readouterr().out.splitlines()
    report = frozen_bn.diagnose(model, separable()[0], verbose=0)
    reported = report.to_text().splitlines()

    for name, row in expected.items():
        assert cells(inspected, name) == row
        # Statistics in columns 4 to 6, then how fit() runs the layer.
        assert [*cells(reported, name)[:4], cells(reported, name)[7]] == row


def test_cli_diagnose_prints_report_and_saves_plot(tmp_path, capsys):
    model_path, data_path = saved_files(tmp_path)
    plot_path = tmp_path / "plot.png"

    code = cli.main(
        [
            "diagnose",
            model_path,
            data_path,
            "--labels",
            "y",
            "--plot",
            str(plot_path),
        ]
    )

    assert code == 0
    out = capsys.readouterr().out
    assert "Verdict: Out-of-scale" in out
    assert "close to chance" in out
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("which", ["model", "data"])
def test_cli_diagnose_missing_file_exits_2(tmp_path, capsys, which):
    model_path, data_path = saved_files(tmp_path)
    paths = {"model": model_path, "data": data_path}
    paths[which] = str(tmp_path / f"absent_{which}.npz")
    if which == "model":
        paths[which] = str(tmp_path / "absent.keras")

    assert cli.main(["diagnose", paths["model"], paths["data"]]) == 2
    assert f"no such {which} file" in capsys.readouterr().err


def test_cli_unreadable_model_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    assert cli.main(["inspect", str(broken)]) == 2
    assert "is not a Keras model file" in capsys.readouterr().err


def test_cli_data_of_the_wrong_shape_exits_2(tmp_path, capsys):
    model_path, _ = saved_files(tmp_path)
    np.savez(tmp_path / "images.npz", x=images(64))

    code = cli.main(["diagnose", model_path, str(tmp_path / "images.npz")])

    assert code == 2
    captured = capsys.readouterr()
    assert "Expected each batch of `x` to fit the inputs" in captured.err
    assert "Traceback" not in captured.err
