"""Exporting a model for serving, in inference mode, and checking the result."""

import contextlib
import os

import keras
import numpy as np

from frozen_bn import _artifacts, _atomic
from frozen_bn._checks import (
    check_bool,
    check_keywords,
    check_model,
    check_one_of,
    check_path,
    check_positive_number,
)
from frozen_bn._data import arrays_of, check_arrays
from frozen_bn._export_formats import FORMATS
from frozen_bn._export_report import (
    ExportMismatchError,
    ExportReport,
    mismatch_message,
    output_errors,
)

DEFAULT_TOLERANCE = 1e-4
# The file that marks a directory format's directory as an artifact, which
# `export` may replace.
_MARKERS = {"tf_saved_model": "saved_model.pb"}


class _InferenceCall(keras.Model):
    """Calls the model it wraps with `training=False`, whatever the caller.

    What an exporter traces is this call, so every layer of the wrapped
    model, augmentation and Dropout layers included, is in inference mode
    in the artifact, on any Keras release and whatever the layers'
    `training` defaults.
    """

    def __init__(self, model):
        super().__init__(name=model.name)
        self.wrapped = model
        self.built = True

    def call(self, inputs):
        return self.wrapped(inputs, training=False)


def export(
    model,
    filepath,
    format="tf_saved_model",
    *,
    check_data=None,
    tolerance=DEFAULT_TOLERANCE,
    verbose=False,
    **kwargs,
):
    """Exports `model` for serving, with every layer in inference mode.

    Keras's own `model.export` traces a call of the model without a
    `training` argument. On Keras <= 3.15, a layer whose `call` defaults to
    `training=True` (every augmentation layer, such as `RandomFlip`) then
    puts every later layer in training mode: a SavedModel or ONNX export of
    a model with augmentation before a BatchNormalization serves batch
    statistics and flips at random. On Keras 3.16 the augmentation layer
    itself still runs in training mode. `export` traces a call with
    `training=False` instead, through `model.export`'s exporters; `model`
    is not modified.

    The file or directory is written whole or not at all: it is exported
    to a staging directory beside `filepath`, checked there on
    `check_data`, and only then renamed into place; on any failure or
    interruption `filepath` is as it was. Only what `export` writes is
    replaced: a SavedModel only an empty directory or another SavedModel
    (one holding `saved_model.pb`), an ONNX or LiteRT file (and the ONNX
    external data beside it) only files. Anything else there, the working
    directory, a home directory and a filesystem root are refused before
    anything is written (see docs/guarantees.md).

    Supported formats: `"tf_saved_model"`, `"onnx"` and `"litert"` on
    TensorFlow; `"tf_saved_model"` and `"onnx"` on JAX; `"onnx"` on torch.
    ONNX needs `tf2onnx` (TensorFlow) or `jax2onnx` (JAX); checking an
    artifact needs its runtime (`pip install frozen_bn[export]`).

    Args:
        model: A built `keras.Model` (Functional, Sequential, or any model
            when `input_signature` is given).
        filepath: Where to write the artifact (a directory for
            `"tf_saved_model"`); LiteRT files end in `.tflite`. Its
            directory must exist.
        format: `"tf_saved_model"` (default), `"onnx"` or `"litert"`.
        check_data: Optional inputs (a NumPy array, or a list or dict of
            them) to run the artifact on in its own runtime and compare
            with `model.predict`; see `check_export`.
        tolerance: Relative tolerance of the check (see `ExportReport`).
        verbose: Whether Keras prints its export messages.
        **kwargs: Passed to `model.export` (e.g. `input_signature`,
            `opset_version`, LiteRT converter options).

    Returns:
        The `ExportReport` of the check, or `None` without `check_data`.

    Raises:
        ExportMismatchError: The artifact disagrees with `model.predict`;
            `filepath` is as it was.
        ImportError: `check_data` is given and the format's runtime is not
            installed (checked before anything is written).
        ValueError: Something at `filepath` that `export` does not replace.
        OSError: `filepath` cannot be written (e.g. a read-only place); the
            error's `filename` is `filepath` as given.

    Example:

    >>> frozen_bn.export(model, "model.onnx", format="onnx", check_data=x)
    """
    # 1. Check every argument before anything is written.
    check_model(model, keras3_only=True, graph="input_signature" not in kwargs)
    filepath = _check_filepath(filepath, format)
    tolerance = check_positive_number(tolerance, "tolerance")
    verbose = check_bool(verbose, "verbose")
    check_keywords(
        kwargs,
        _export_keywords(format),
        f" by `model.export` for format={format!r} on the "
        f"{keras.backend.backend()} backend",
    )
    if check_data is not None:
        _require_runtime(format)
        check_data = _as_input_arrays(model, check_data, "check_data")
    # 2. Export the inference-mode call to a staging directory.
    if "input_signature" not in kwargs:
        kwargs["input_signature"] = _input_signature(model)
    wrapper = _InferenceCall(model)
    report = None
    marker = _MARKERS.get(format)
    with _atomic.replacing_entries(filepath, "filepath", marker) as path:
        with _without_gradients(model):
            wrapper.export(path, format=format, verbose=verbose, **kwargs)
        # 3. Run it there in its own runtime, before `filepath` changes.
        if check_data is not None:
            report = _compare(
                model, filepath, check_data, format, tolerance, staged=path
            )
    # 4. Leaving the block moved it into place, whole.
    return report


def check_export(
    model,
    filepath,
    data,
    format="tf_saved_model",
    *,
    tolerance=DEFAULT_TOLERANCE,
):
    """Compares an exported artifact, run in its own runtime, with
    `model.predict` on `data`.

    Works on any artifact of `model`, including one from Keras's own
    `model.export`. When they disagree, the error names the BatchNormalization
    layers that the installed Keras runs in training mode in a call without
    `training`, and the layer whose `training=True` default causes it.

    Args:
        model: The `keras.Model` the artifact was exported from.
        filepath: The artifact.
        data: Inputs: a NumPy array, or a list or dict of them.
        format: `"tf_saved_model"` (default), `"onnx"` or `"litert"`.
        tolerance: An output agrees when its largest absolute error is at
            most `tolerance * max(1, max(abs(expected)))`. The default,
            `1e-4`, is hundreds of times the float32 round-off of a deep
            network run by another runtime, and far below what a layer in
            the wrong mode makes.

    Returns:
        An `ExportReport`.

    Raises:
        ExportMismatchError: The artifact disagrees with `model.predict`.
        ImportError: The format's runtime is not installed.
    """
    check_model(model, keras3_only=True)
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise ValueError(
            "Expected `filepath` to be an exported artifact; there is none. "
            f"Received: filepath={filepath!r}"
        )
    _check_format(format)
    tolerance = check_positive_number(tolerance, "tolerance")
    _require_runtime(format)
    return _compare(
        model, filepath, _as_input_arrays(model, data), format, tolerance
    )


def _compare(model, filepath, data, format, tolerance, staged=None):
    """The `ExportReport` of the artifact at `staged` (default: `filepath`)
    on `data`, naming `filepath`."""
    expected = keras.tree.flatten(model.predict(data, verbose=0))
    actual = _artifacts.run(staged or filepath, format, data)
    report = ExportReport(
        filepath,
        format,
        output_errors(model, expected, actual, tolerance),
        tolerance,
    )
    if not report.ok:
        raise ExportMismatchError(mismatch_message(model, report), report)
    return report


def _as_input_arrays(model, data, name="data"):
    """`data`, checked as the data contract checks it (`_data`), as NumPy
    arrays of the model's input dtypes: one array, or a dict of them keyed
    by input name (a list is in the order of `model.inputs`).

    Both `model.predict` and `_artifacts.run` take that form, so that each
    runtime matches the inputs by name. A subclassed model, which does not
    name its inputs, takes one array or a dict keyed by the names of its
    `input_signature`.
    """
    check_arrays(model, data, name=name)
    data = arrays_of(data, name)
    tensors = _model_inputs(model)
    if tensors is None:
        if isinstance(data, list) and len(data) > 1:
            raise ValueError(
                f"Expected `{name}` to be an array or a dict of arrays keyed "
                "by input name: a subclassed model does not name its inputs. "
                f"Received: a list of {len(data)} arrays"
            )
        data = data[0] if isinstance(data, list) else data
        return keras.tree.map_structure(np.asarray, data)
    arrays = (
        [data[tensor.name] for tensor in tensors]
        if isinstance(data, dict)
        else keras.tree.flatten(data)
    )
    named = {
        tensor.name: np.asarray(array, dtype=tensor.dtype)
        for tensor, array in zip(tensors, arrays, strict=True)
    }
    return named if len(named) > 1 else next(iter(named.values()))


def _model_inputs(model):
    """`model.inputs`, or `None` for a model without (a subclassed one)."""
    try:
        return model.inputs or None
    except AttributeError:
        return None


def _input_signature(model):
    """What `export` traces `model` on: its inputs, named as its own.

    A Sequential model takes one tensor, and records the batch size of the
    first batch it was called on (Keras 3.15): its artifact takes any. One
    with a layer that infers no output shape has no graph, nor `inputs`:
    the shape it was built on is read where Keras's own export reads it.
    """
    if not isinstance(model, keras.Sequential):
        return [model.input]
    try:
        (tensor,) = model.inputs
        shape, dtype, name = tensor.shape, tensor.dtype, tensor.name
    except AttributeError:  # No graph. A private attribute of Keras 3:
        shape = model._build_shapes_dict["input_shape"]
        dtype, name = model.input_dtype, None
    return [keras.InputSpec(shape=(None, *shape[1:]), dtype=dtype, name=name)]


def _export_keywords(format):
    """The keywords that `model.export` takes for `format` here."""
    if format == "litert":  # The LiteRT converter's options (TensorFlow).
        import tensorflow as tf

        converter = tf.lite.TFLiteConverter([], None)
        options = {name for name in vars(converter) if name[0] != "_"}
        return {"input_signature", "target_spec", *options}
    if format == "onnx":
        return {"input_signature", "opset_version"}
    if keras.backend.backend() == "jax":  # jax2tf's, for a SavedModel.
        return {"input_signature", "is_static", "jax2tf_kwargs"}
    return {"input_signature"}


def _check_format(format):
    backend = keras.backend.backend()
    return check_one_of(
        format, "format", FORMATS.get(backend, ()), f" on the {backend} backend"
    )


def _check_filepath(filepath, format):
    """`filepath` as a str, if `export` may write `format` there."""
    filepath = check_path(filepath, "filepath")
    _check_format(format)
    if format == "litert" and not filepath.endswith(".tflite"):
        raise ValueError(
            "Expected `filepath` to end in `.tflite` for format='litert'. "
            f"Received: filepath={filepath!r}"
        )
    directory = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(directory):
        what = "is not one" if os.path.exists(directory) else "does not exist"
        raise ValueError(
            f"Expected `filepath` to be in an existing directory; "
            f"{directory} {what}. Received: filepath={filepath!r}"
        )
    kind = "directory" if format in _MARKERS else "file"
    _atomic.check_replaceable(filepath, "filepath", kind, _MARKERS.get(format))
    return filepath


def _require_runtime(format):
    package = _artifacts.missing_runtime(format)
    if package:
        raise ImportError(
            f"Checking a {format} artifact needs `{package}`: "
            "pip install 'frozen_bn[export]'"
        )


@contextlib.contextmanager
def _without_gradients(model):
    """On torch, `model`'s weights ask for no gradient while it is exported.

    The ONNX tracer refuses a weight that asks for one and that it cannot
    see as a parameter (keras-hub backbones); an exported computation needs
    none. The flags are put back, whatever happens.
    """
    if keras.backend.backend() != "torch":
        yield
        return
    tensors = [variable.value for variable in model.variables]
    flags = [tensor.requires_grad for tensor in tensors]
    try:
        for tensor in tensors:
            tensor.requires_grad_(False)
        yield
    finally:
        for tensor, flag in zip(tensors, flags, strict=True):
            tensor.requires_grad_(flag)
