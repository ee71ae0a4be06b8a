"""Reading and writing the files the `frozen-bn` subcommands take.

A model file is read with what it holds, its compile config and optimizer
state included, and written whole or not at all (see `frozen_bn._atomic`):
an interrupted run leaves the old file or the complete new one, also when
the output is the input. Every problem with a path is a `UsageError` that
says which path and what is wrong with it.
"""

import contextlib
import json
import os
import sys
import zipfile

from frozen_bn.cli._command import UsageError

MODEL_SUFFIXES = (".keras", ".h5")


def load_model_file(path):
    """Loads a `.keras` or `.h5` model file, compiled if it was saved so.

    A file whose compile config Keras cannot restore (e.g. a legacy `.h5`
    with metrics this Keras no longer reads) is read without it, and a
    note on stderr says so.

    Raises:
        UsageError: `path` is missing, a directory, unreadable, of another
            kind, or not a model Keras can read.
    """
    _check_readable(path, "model file")
    if not path.endswith(MODEL_SUFFIXES):
        raise UsageError(f"expected a .keras or .h5 model file, got: {path}")
    if not _is_model_container(path):
        kind = "a zip archive" if path.endswith(".keras") else "an HDF5 file"
        raise UsageError(
            f"{path} is not a Keras model file: a {path[-5:].lstrip('.')} "
            f"model file is {kind}, and this one is not"
        )
    import keras

    # Registers our layers for loading (under `frozen-bn`, `import
    # frozen_bn` imports nothing: see `frozen_bn/__init__.py`).
    import frozen_bn.layers  # noqa: F401

    try:
        return keras.models.load_model(path)
    except Exception as error:  # Keras raises many types here.
        compile_error = error
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as error:
            raise UsageError(
                f"cannot read model file {path}: {error}"
            ) from error
    print(
        f"note: the compile config of {path} cannot be restored "
        f"({compile_error}): the model is read without it and without "
        "its optimizer state",
        file=sys.stderr,
    )
    return model


def save_model_file(model, path, *, source):
    """Saves `model` to a `.keras` or `.h5` path, whole or not at all.

    Says on stderr what of `source` (the file `model` was loaded from) the
    output does not keep: its compile config and optimizer state, when
    `model` is not compiled but the source was.

    Raises:
        UsageError: `path` has another extension, is something other than
            a file (see `check_writable`), or its directory is missing or
            not writable.
    """
    check_model_output(path)
    from frozen_bn._atomic import replacing

    try:
        with replacing(path) as temporary:
            model.save(temporary)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from error
    if _is_compiled_file(source) and not getattr(model, "compiled", False):
        print(
            f"note: {path} is not compiled: the compile config and "
            f"optimizer state of {source} were not kept (call compile() "
            "before training it)",
            file=sys.stderr,
        )


def check_model_output(path):
    """Raises a `UsageError` unless a model file can be saved at `path`."""
    if not path.endswith(MODEL_SUFFIXES):
        raise UsageError(f"expected a .keras or .h5 output path, got: {path}")
    check_writable(path)


def check_writable(path):
    """Raises a `UsageError` unless a file can be written at `path`.

    Only a regular file there is replaced, never a directory, a link or a
    special file (see `frozen_bn._atomic.in_the_way`).
    """
    from frozen_bn._atomic import in_the_way

    what = in_the_way(path)
    if what is not None:
        raise UsageError(f"output path is {what}: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "is a file" if os.path.exists(directory) else "does not exist"
        raise UsageError(f"output directory {what}: {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"output directory is not writable: {directory}")


def save_figure_file(figure, path):
    """Saves a matplotlib figure as a `.png`, whole or not at all."""
    check_writable(path)
    from frozen_bn._atomic import save_figure

    try:
        save_figure(figure, path, dpi=120)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error.strerror}") from error


def load_arrays(args):
    """The inputs and labels named by `args` in the .npz file `args.data`."""
    import numpy as np

    _check_readable(args.data, "data file")
    try:
        with np.load(args.data, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # numpy raises many types for bad files.
        raise UsageError(
            f"cannot read data file {args.data}: {error}"
        ) from error
    candidates = [key for key in arrays if key != args.labels]
    key = args.inputs or ("x" if "x" in arrays else None)
    if key is None and len(candidates) == 1:
        key = candidates[0]
    for name, wanted in (("--inputs", key), ("--labels", args.labels)):
        if wanted is not None and wanted not in arrays:
            raise UsageError(
                f"{args.data} has no array {wanted!r} ({name}); it holds: "
                f"{', '.join(sorted(arrays))}"
            )
    if key is None:
        raise UsageError(
            f"{args.data} holds several arrays ({', '.join(sorted(arrays))}): "
            "name the inputs with --inputs"
        )
    return arrays[key], arrays.get(args.labels)


def _check_readable(path, what):
    if not os.path.exists(path):
        raise UsageError(f"no such {what}: {path}")
    if os.path.isdir(path):
        raise UsageError(f"{path} is a directory, not a {what}")
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {what} {path}: permission denied")


def _is_model_container(path):
    if path.endswith(".keras"):
        return zipfile.is_zipfile(path)
    with open(path, "rb") as file:
        return file.read(8) == b"\x89HDF\r\n\x1a\n"


def _is_compiled_file(path):
    """Whether the model file at `path` holds a compile config."""
    with contextlib.suppress(Exception):  # Unknown layouts count as not.
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
            return bool(config.get("compile_config"))
        import h5py

        with h5py.File(path, "r") as file:
            return "training_config" in file.attrs
    return False
