"""Tests for `frozen_bn.export`, `check_export` and `frozen-bn export`.

Every artifact is run in its own runtime (TensorFlow's SavedModel loader,
onnxruntime, LiteRT's interpreter) and compared with `model.predict`.
"""

import os

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _artifacts, _training_arg, cli
from frozen_bn.exporting import FORMATS
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    randomize_batch_norms,
)
from tests.keras_hub_models import (
    IMAGE_SHAPE,
    image_classifier,
    requires_keras_hub,
    shared_backbone,
)

BACKEND = keras.backend.backend()
SUFFIX = {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
# jax2onnx takes 10-30 s per model on two cores: the JAX ONNX runs are slow.
slow_on_jax = pytest.mark.slow if BACKEND == "jax" else ()
# The backend's first format, for tests of one.
FORMAT = FORMATS[BACKEND][0]


def formats(*wanted):
    """`wanted` formats (default: all) that the backend exports, as params."""
    return [
        pytest.param(f, marks=slow_on_jax if f == "onnx" else ())
        for f in wanted or ("tf_saved_model", "onnx", "litert")
        if f in FORMATS[BACKEND]
    ]


# Float32 round-off: a runtime that computes the convolution in another
# order differs by a few ulps of the accumulated terms (seen: <= 3e-6 on
# outputs of size ~10); a layer in the wrong mode differs by ~1 or more.
ROUND_OFF = 2e-5


def keras_at_least(major, minor):
    return tuple(int(p) for p in keras.version().split(".")[:2]) >= (
        major,
        minor,
    )


def augmented_model():
    """Augmentation before Conv2D + BN, as the Keras guides build it; the
    moving means (2 to 5) are far from the batch statistics."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(x), name="augmented")
    bn.moving_mean.assign(np.linspace(2.0, 5.0, 4).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype("float32"))
    return model


def artifact_path(tmp_path, format, name="model"):
    return str(tmp_path / f"{name}{SUFFIX[format]}")


def run_artifact(path, format, inputs):
    return _artifacts.run(path, format, inputs)[0]


def assert_serves_like_predict(model, path, format, inputs):
    expected = model.predict(inputs, verbose=0)
    actual = run_artifact(path, format, inputs)
    if format == "tf_saved_model" and BACKEND == "tensorflow":  # Same kernels.
        np.testing.assert_array_equal(actual, expected)
    else:
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(
            actual, expected, rtol=0, atol=ROUND_OFF * scale
        )


# ----------------------------------------------------------------------------
# export


@pytest.mark.parametrize("format", formats())
def test_augmented_model_serves_like_predict(tmp_path, format):
    model, x = augmented_model(), images(8)
    path = artifact_path(tmp_path, format)

    report = frozen_bn.export(model, path, format, check_data=x)

    assert report.ok and report.format == format
    assert [o.name for o in report.outputs] == ["bn"]
    assert_serves_like_predict(model, path, format, x)


@pytest.mark.parametrize("format", formats())
def test_model_is_bitwise_untouched(tmp_path, format):
    model, x = augmented_model(), images(8)
    before, flags = all_weights(model), gradient_flags(model)
    predicted = model.predict(x, verbose=0)

    frozen_bn.export(model, artifact_path(tmp_path, format), format)

    assert_weights_bitwise_equal(before, all_weights(model))
    assert gradient_flags(model) == flags
    np.testing.assert_array_equal(model.predict(x, verbose=0), predicted)


def gradient_flags(model):
    """torch's `requires_grad` of each weight (export turns them off)."""
    if BACKEND != "torch":
        return None
    return [variable.value.requires_grad for variable in model.variables]


def _patched(model):
    return frozen_bn.patch_model(model)


def _frozen(model):
    return frozen_bn.freeze(model, up_to="bn")


def _folded(model):
    return frozen_bn.fold_batch_norms(model)[0]


@pytest.mark.parametrize("convert", [_patched, _frozen, _folded])
@pytest.mark.parametrize("format", formats("tf_saved_model", "onnx"))
def test_patched_frozen_and_folded_models_serve_like_predict(
    tmp_path, format, convert
):
    model, x = convert(augmented_model()), images(8)
    path = artifact_path(tmp_path, format)

    frozen_bn.export(model, path, format, check_data=x)

    assert_serves_like_predict(model, path, format, x)


@pytest.mark.slow
@pytest.mark.parametrize("format", formats())
def test_patched_application_serves_like_predict(tmp_path, format):
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    model = frozen_bn.patch_model(randomize_batch_norms(model))
    x = images(4, size=32)
    path = artifact_path(tmp_path, format)

    frozen_bn.export(model, path, format, check_data=x)

    assert_serves_like_predict(model, path, format, x)


@pytest.mark.slow
@requires_keras_hub
@pytest.mark.parametrize("format", formats("tf_saved_model", "onnx"))
def test_keras_hub_backbone_and_task_serve_like_predict(
    tmp_path, format, request
):
    if BACKEND == "jax" and format == "onnx":
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="jax2onnx 0.17 writes the backbone's MaxPool in a form "
                "onnxruntime 1.32 rejects ('Unsupported pooling size'); "
                "Keras's own export refuses this backbone on JAX",
            )
        )
    x = images(4, size=IMAGE_SHAPE[0])
    task = image_classifier("resnet_v1")
    randomize_batch_norms(task)
    for name, model in (
        ("backbone", shared_backbone("resnet_v1")),
        ("task", task),
    ):
        path = artifact_path(tmp_path, format, name)
        frozen_bn.export(model, path, format, check_data=x)
        assert_serves_like_predict(model, path, format, x)


def test_existing_artifact_is_replaced_whole(tmp_path):
    model, x = augmented_model(), images(8)
    path = artifact_path(tmp_path, FORMAT)
    frozen_bn.export(model, path, FORMAT)
    model.get_layer("bn").moving_mean.assign(np.zeros(4, "float32"))

    frozen_bn.export(model, path, FORMAT)

    assert_serves_like_predict(model, path, FORMAT, x)
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_failed_export_writes_nothing(tmp_path):
    model, format = augmented_model(), FORMAT
    wrong = [keras.InputSpec(shape=(None, 5), dtype="float32")]

    with pytest.raises(ValueError):  # Raised by Keras's tracing.
        frozen_bn.export(
            model,
            artifact_path(tmp_path, format),
            format,
            input_signature=wrong,
        )

    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# The Keras facts export works around


@pytest.mark.skipif(BACKEND != "tensorflow", reason="one backend suffices")
def test_fact_stock_saved_model_of_augmented_model_runs_layers_in_training_mode(
    tmp_path,
):
    """Keras <= 3.15: the BN normalizes with batch statistics; Keras 3.16:
    the BN is right, but the RandomFlip flips at random.
    """
    model, x = augmented_model(), images(8)
    path = artifact_path(tmp_path, "tf_saved_model")
    model.export(path, verbose=False)

    served = run_artifact(path, "tf_saved_model", x)

    predicted = model.predict(x, verbose=0)
    flipped = model.predict(x[:, :, ::-1], verbose=0)
    per_sample = [
        min(np.abs(s - p).max(), np.abs(s - f).max())
        for s, p, f in zip(served, predicted, flipped, strict=True)
    ]
    if keras_at_least(3, 16):  # Each sample is predict's, flipped or not.
        assert max(per_sample) < ROUND_OFF * 10
        assert np.abs(served - predicted).max() > 0.01
    else:  # Batch statistics: no sample is near either.
        assert min(per_sample) > 1.0


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf2onnx only")
@pytest.mark.skipif(keras_at_least(3, 16), reason="Keras 3.15 fact")
def test_fact_stock_onnx_of_augmented_model_does_not_load_on_keras_3_15(
    tmp_path,
):
    model, x = augmented_model(), images(2)
    model.predict(x, verbose=0)  # Keras's ONNX exporter wants a called model.
    path = artifact_path(tmp_path, "onnx")
    model.export(path, format="onnx", verbose=False)

    with pytest.raises(Exception, match="StatelessRandomUniform"):
        run_artifact(path, "onnx", x)


# ----------------------------------------------------------------------------
# check_export


@pytest.mark.parametrize("format", formats("tf_saved_model"))
def test_check_raises_on_planted_wrong_artifact(tmp_path, format):
    model, x = augmented_model(), images(8)
    wrong = augmented_model()
    wrong.get_layer("bn").moving_mean.assign(np.zeros(4, "float32"))
    path = artifact_path(tmp_path, format)
    frozen_bn.export(wrong, path, format)

    with pytest.raises(frozen_bn.ExportMismatchError, match="DIFFERS") as info:
        frozen_bn.check_export(model, path, x, format)

    assert not info.value.report.ok
    assert info.value.report.outputs[0].max_abs_error > 1.0
    if _training_arg.spreads_training_default():  # Keras <= 3.15
        assert "bn (after flip, a RandomFlip" in str(info.value)
    else:
        assert "No BatchNormalization layer of `augmented`" in str(info.value)


def test_check_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(
        _artifacts.RUNTIMES, "onnx", ("no_such_runtime_module", "onnxruntime")
    )
    path = artifact_path(tmp_path, "onnx")

    with pytest.raises(ImportError, match=r"pip install 'frozen_bn\[export\]'"):
        frozen_bn.export(augmented_model(), path, "onnx", check_data=images(2))

    assert os.listdir(tmp_path) == []


def test_report_to_dict_and_text(tmp_path):
    model, x = augmented_model(), images(4)
    path = artifact_path(tmp_path, FORMAT)

    report = frozen_bn.export(model, path, FORMAT, check_data=x)

    assert report.to_dict()["ok"] is True
    assert report.to_dict()["outputs"][0]["name"] == "bn"
    assert "agrees with predict" in report.to_text()


# ----------------------------------------------------------------------------
# Validation


def test_unsupported_format_names_format_and_backend(tmp_path):
    with pytest.raises(
        ValueError, match=rf"`format`.*{BACKEND}.*format='torch'"
    ):
        frozen_bn.export(augmented_model(), str(tmp_path / "m"), "torch")


def test_format_of_another_type_is_a_type_error(tmp_path):
    model = augmented_model()
    before = all_weights(model)
    with pytest.raises(TypeError, match=r"`format`.*format=3 of type int"):
        frozen_bn.export(model, str(tmp_path / "m"), 3)
    assert_weights_bitwise_equal(before, all_weights(model))
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(BACKEND == "tensorflow", reason="TensorFlow writes LiteRT")
def test_litert_outside_tensorflow_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"on the {BACKEND} backend"):
        frozen_bn.export(
            augmented_model(), str(tmp_path / "m.tflite"), "litert"
        )


def test_bad_arguments_are_named(tmp_path):
    model = augmented_model()
    path = artifact_path(tmp_path, FORMAT)
    with pytest.raises(TypeError, match="Expected `model`"):
        frozen_bn.export("model.keras", path, FORMAT)
    with pytest.raises(TypeError, match="Expected `filepath`.*filepath=3"):
        frozen_bn.export(model, 3, FORMAT)
    with pytest.raises(ValueError, match="existing directory"):
        frozen_bn.export(model, str(tmp_path / "missing" / "m"), FORMAT)
    with pytest.raises(ValueError, match="tolerance=0"):
        frozen_bn.export(model, path, FORMAT, tolerance=0)
    with pytest.raises(
        ValueError, match=r"`check_data`.*A list of arrays is the inputs"
    ):
        frozen_bn.export(model, path, FORMAT, check_data=[images(2)] * 2)
    with pytest.raises(ValueError, match="Expected `filepath` to be an export"):
        frozen_bn.check_export(model, path, images(2), FORMAT)
    if "litert" in FORMATS[BACKEND]:
        with pytest.raises(ValueError, match=r"\.tflite"):
            frozen_bn.export(model, str(tmp_path / "m"), "litert")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# frozen-bn export


@pytest.mark.parametrize("format", formats("onnx"))
def test_cli_export_with_check(tmp_path, capsys, format):
    model = augmented_model()
    model.save(tmp_path / "model.keras")
    np.savez(tmp_path / "data.npz", x=images(4))
    out = artifact_path(tmp_path, format, "served")

    code = cli.main(
        [
            "export",
            str(tmp_path / "model.keras"),
            out,
            "--format",
            format,
            "--check",
            str(tmp_path / "data.npz"),
        ]
    )

    assert code == 0
    printed = capsys.readouterr().out
    assert "agrees with predict" in printed and f"-> {out}" in printed
    assert_serves_like_predict(model, out, format, images(4))


def test_cli_export_bad_format_exits_2(tmp_path, capsys):
    augmented_model().save(tmp_path / "model.keras")
    out = str(tmp_path / "out")

    with pytest.raises(SystemExit) as exit_info:
        cli.main(
            ["export", str(tmp_path / "model.keras"), out, "--format", "pt"]
        )

    assert exit_info.value.code == 2
    assert "--format: invalid choice: 'pt'" in capsys.readouterr().err
    assert not os.path.exists(out)
