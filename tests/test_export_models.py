"""`frozen_bn.export` and `check_export` on every kind of model, and their
argument checks.

Each artifact is run here by its runtime directly, its inputs fed by name
(independently of `frozen_bn._artifacts`), and compared with
`model.predict`.
"""

import os

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn.exporting import FORMATS
from tests.helpers import randomize_batch_norms

BACKEND = keras.backend.backend()
SUFFIX = {"tf_saved_model": "", "onnx": ".onnx", "litert": ".tflite"}
ALL = FORMATS[BACKEND]
FORMAT = ALL[0]
# Float32 round-off of another runtime's kernels (see test_exporting.py).
ROUND_OFF = 2e-5


def features(count=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 2.0, (count, 3)).astype("float32")


class Doubled(keras.layers.Layer):
    """Infers no output shape: a Sequential model holding it has no graph."""

    def compute_output_spec(self, inputs):
        raise NotImplementedError

    def call(self, inputs):
        return 2.0 * inputs


def sequential(how):
    """Dense + BN, built with `build`, by a call on one sample, or (without
    a graph) by a call with a layer that infers no shape."""
    layers = [keras.layers.Dense(4, name="dense")]
    layers += [Doubled()] * (how == "graphless")
    model = keras.Sequential([*layers, keras.layers.BatchNormalization()])
    if how == "built":
        model.build((None, 3))
    else:
        model(features(1))
    return randomize_batch_norms(model)


def functional():
    """Dense + BN, a Functional model: the argument checks' model, which
    today's main exports, so that their tests fail for their own reason."""
    inputs = keras.Input((3,), name="x")
    x = keras.layers.Dense(4, name="dense")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    return randomize_batch_norms(keras.Model(inputs, outputs))


class DenseBN(keras.Model):
    """A subclassed model: Dense + BN in Python code."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(4)
        self.bn = keras.layers.BatchNormalization()

    def call(self, inputs, training=None):
        return self.bn(self.dense(inputs), training=training)


def subclassed():
    model = DenseBN()
    model(features(1))
    return randomize_batch_norms(model)


SIGNATURE = [keras.InputSpec(shape=(None, 3), dtype="float32")]


def two_inputs(structure):
    """`a - 2 * b` then Dense + BN: swapped inputs give another output.

    The list model takes `[b, a]`, out of name order; the dict model
    `{"b": b, "a": a}`.
    """
    a = keras.Input((3,), name="a")
    b = keras.Input((3,), name="b")
    x = keras.layers.Dense(4, name="dense")(a - 2.0 * b)
    outputs = keras.layers.BatchNormalization(name="bn")(x)
    inputs = [b, a] if structure == "list" else {"b": b, "a": a}
    return randomize_batch_norms(keras.Model(inputs, outputs))


def path_for(tmp_path, format, name="model"):
    return str(tmp_path / f"{name}{SUFFIX[format]}")


def served(path, format, inputs):
    """The artifact's only output on `inputs` (an array, or a dict keyed by
    input name), run by its own runtime, fed by name."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
        names = [spec.name for spec in session.get_inputs()]
        return session.run(None, by_name(names, inputs))[0]
    if format == "tf_saved_model":
        import tensorflow as tf

        artifact = tf.saved_model.load(path)
        serving = artifact.signatures["serving_default"]
        names = list(serving.structured_input_signature[1])
        (output,) = serving(**by_name(names, inputs)).values()
        return output.numpy()
    return litert_served(path, inputs)


def litert_served(path, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    details = interpreter.get_input_details()
    # The converter names each input tensor `serving_default_<name>:0`.
    names = [
        d["name"].removeprefix("serving_default_").rsplit(":", 1)[0]
        for d in details
    ]
    feed = by_name(names, inputs)
    for detail, name in zip(details, names, strict=True):
        interpreter.resize_tensor_input(detail["index"], feed[name].shape)
    interpreter.allocate_tensors()
    for detail, name in zip(details, names, strict=True):
        interpreter.set_tensor(detail["index"], feed[name])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def by_name(names, inputs):
    if not isinstance(inputs, dict):
        assert len(names) == 1, names
        return {names[0]: inputs}
    assert sorted(names) == sorted(inputs)
    return {name: inputs[name] for name in names}


def assert_serves_like_predict(model, path, format, named):
    expected = keras.ops.convert_to_numpy(model.predict(named, verbose=0))
    actual = served(path, format, named)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ROUND_OFF * scale)


def assert_exports_and_checks(model, tmp_path, format, data, named, **kwargs):
    """Exports and checks on `data`; runs the artifact on `named`, the same
    inputs as one array or a dict keyed by input name."""
    path = path_for(tmp_path, format)

    report = frozen_bn.export(model, path, format, check_data=data, **kwargs)

    assert report.ok
    assert frozen_bn.check_export(model, path, data, format).ok
    assert_serves_like_predict(model, path, format, named)


# ----------------------------------------------------------------------------
# Every kind of model, on every format of the backend


@pytest.mark.parametrize("how", ["built", "called", "graphless"])
@pytest.mark.parametrize("format", ALL)
def test_sequential_model_exports_and_checks(tmp_path, format, how):
    model, x = sequential(how), features()

    assert_exports_and_checks(model, tmp_path, format, x, x)


@pytest.mark.parametrize("format", ALL)
def test_subclassed_model_with_input_signature_exports_and_checks(
    tmp_path, format
):
    model, x = subclassed(), features()

    assert_exports_and_checks(
        model, tmp_path, format, x, x, input_signature=SIGNATURE
    )


@pytest.mark.parametrize("structure", ["list", "dict"])
@pytest.mark.parametrize("format", ALL)
def test_two_inputs_of_one_shape_are_matched_by_name(
    tmp_path, format, structure
):
    model = two_inputs(structure)
    named = {"a": features(seed=1), "b": features(seed=2)}
    in_order = [named[tensor.name] for tensor in model.inputs]
    swapped = model.predict({"a": named["b"], "b": named["a"]}, verbose=0)
    assert np.abs(swapped - model.predict(named, verbose=0)).max() > 0.1

    for data in (in_order, named):
        assert_exports_and_checks(model, tmp_path, format, data, named)


@pytest.mark.parametrize("format", ALL)
def test_check_of_swapped_artifact_raises(tmp_path, format):
    """An artifact of `2 * a - b` is told apart from one of `a - 2 * b`."""
    model = two_inputs("list")
    b, a = model.inputs
    x = model.get_layer("dense")(b - 2.0 * a)  # The same layers.
    other = keras.Model([b, a], model.get_layer("bn")(x))
    path = path_for(tmp_path, format)
    frozen_bn.export(other, path, format)
    data = {"a": features(seed=1), "b": features(seed=2)}

    with pytest.raises(frozen_bn.ExportMismatchError):
        frozen_bn.check_export(model, path, data, format)


# ----------------------------------------------------------------------------
# Arguments


@pytest.mark.parametrize("tolerance", ["1e-3", True, None, [1e-3]])
def test_tolerance_of_another_type_is_a_type_error(tmp_path, tolerance):
    model = functional()
    path = path_for(tmp_path, FORMAT)

    with pytest.raises(TypeError, match="`tolerance`") as info:
        frozen_bn.export(model, path, FORMAT, tolerance=tolerance)

    assert f"tolerance={tolerance!r}" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_numpy_float32_tolerance_is_accepted(tmp_path):
    model, x, tolerance = functional(), features(), np.float32(1e-3)
    path = path_for(tmp_path, FORMAT)

    report = frozen_bn.export(
        model, path, FORMAT, check_data=x, tolerance=tolerance
    )
    checked = frozen_bn.check_export(
        model, path, x, FORMAT, tolerance=tolerance
    )

    assert report.ok and checked.ok
    assert report.tolerance == checked.tolerance
    assert checked.tolerance == pytest.approx(1e-3)
    assert type(checked.tolerance) is float


@pytest.mark.parametrize("verbose", ["no", 1, None])
def test_verbose_must_be_a_bool(tmp_path, verbose):
    path = path_for(tmp_path, FORMAT)

    with pytest.raises(TypeError, match="`verbose`") as info:
        frozen_bn.export(functional(), path, FORMAT, verbose=verbose)

    assert f"verbose={verbose!r}" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("format", ALL)
def test_unknown_export_keyword_is_a_type_error(tmp_path, format):
    path = path_for(tmp_path, format)

    with pytest.raises(TypeError, match="`opset_versoin`") as info:
        frozen_bn.export(functional(), path, format, opset_versoin=17)

    assert f"format={format!r}" in str(info.value)
    assert "opset_versoin=17" in str(info.value)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif("onnx" not in ALL, reason="no ONNX on this backend")
def test_onnx_opset_version_is_passed_on(tmp_path):
    import onnx

    path = path_for(tmp_path, "onnx")

    model, x = sequential("built"), features()  # A Sequential model too.

    frozen_bn.export(model, path, "onnx", check_data=x, opset_version=17)

    opsets = {o.domain: o.version for o in onnx.load(path).opset_import}
    assert opsets[""] == 17


@pytest.mark.skipif(FORMAT != "tf_saved_model", reason="no SavedModel here")
def test_saved_model_refuses_an_onnx_keyword(tmp_path):
    path = path_for(tmp_path, "tf_saved_model")

    with pytest.raises(TypeError, match="`opset_version`"):
        frozen_bn.export(functional(), path, "tf_saved_model", opset_version=17)

    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------
# What a mismatch says


def nan_weights():
    model = functional()
    kernel = model.get_layer("dense").kernel
    kernel.assign(np.full(kernel.shape, np.nan, "float32"))
    return model, features()


def overflowing_inputs():
    """Finite inputs whose sums overflow float32 in the Dense layer."""
    model = functional()
    kernel = model.get_layer("dense").kernel
    kernel.assign(np.ones(kernel.shape, "float32"))
    return model, np.full((8, 3), 3e38, "float32")


@pytest.mark.parametrize("case", [nan_weights, overflowing_inputs])
def test_mismatch_from_a_non_finite_model_says_so(tmp_path, case):
    model, x = case()
    assert not np.isfinite(model.predict(x, verbose=0)).all()

    with pytest.raises(frozen_bn.ExportMismatchError) as info:
        frozen_bn.export(
            model, path_for(tmp_path, FORMAT), FORMAT, check_data=x
        )

    assert [o.predict_finite for o in info.value.report.outputs] == [False]
    message = str(info.value)
    assert "`model.predict` is not finite" in message
    assert "BatchNormalization" not in message


# ----------------------------------------------------------------------------
# check_export of a file that is not the format's


def broken_file(tmp_path, format):
    path = path_for(tmp_path, format, "broken")
    if format == "tf_saved_model":
        os.mkdir(path)
        path = os.path.join(path, "saved_model.pb")
    with open(path, "wb") as file:
        file.write(b"not an artifact")
    return path_for(tmp_path, format, "broken")


def other_format(tmp_path, format):
    """An artifact of another format, named as one of `format`."""
    other = next((f for f in ALL if f != format), None)
    if other is None:
        pytest.skip(f"{BACKEND} writes one format only")
    path = path_for(tmp_path, other, "other")
    frozen_bn.export(functional(), path, other)
    if format == "litert" or SUFFIX[format] != SUFFIX[other]:
        renamed = path_for(tmp_path, format, "renamed")
        os.rename(path, renamed)
        path = renamed
    return path


@pytest.mark.parametrize("make", [broken_file, other_format])
@pytest.mark.parametrize("format", ALL)
def test_check_of_a_file_of_another_format_names_filepath_and_format(
    tmp_path, format, make
):
    path = make(tmp_path, format)

    with pytest.raises(ValueError, match="`filepath`") as info:
        frozen_bn.check_export(functional(), path, features(), format)

    assert f"filepath={path!r}" in str(info.value)
    assert f"format={format!r}" in str(info.value)
