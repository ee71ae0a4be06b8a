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
import stat
import sys
import zipfile

from frozen_bn.cli._command import UsageError

MODEL_SUFFIXES = (".keras", ".h5")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


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
    arrays = _npz_arrays(args.data)
    candidates = [key for key in arrays if key != args.labels]
    key = args.inputs or ("x" if "x" in arrays else None)
    if key is None and len(candidates) == 1:
        key = candidates[0]
    for name, wanted in (("--inputs", key), ("--labels", args.labels)):
        if wanted is not None and wanted not in arrays:
            raise UsageError(
                f"{args.data} has no array {wanted!r} ({name}); it holds: "
                f"{', '.join(sorted(arrays)) or 'no arrays'}"
            )
    if key is None:
        raise UsageError(
            f"{args.data} holds several arrays ({', '.join(sorted(arrays))}): "
            "name the inputs with --inputs"
        )
    return arrays[key], arrays.get(args.labels)


def _npz_arrays(path):
    """The arrays of the .npz archive at `path`, by name.

    Raises:
        UsageError: `path` is not a readable regular file, is another kind
            of file (a `.npy` array, a model file), or holds no array.
    """
    import numpy as np

    _check_readable(path, "data file")
    with open(path, "rb") as file:
        magic = file.read(8)
    names = _zip_names(path) if magic.startswith(b"PK") else None
    if names is None:
        raise UsageError(f"{path} is not a .npz archive{_kind_of(magic)}")
    if {"config.json", "metadata.json"} <= set(names):
        raise UsageError(
            f"{path} is a Keras model file, not a .npz data archive"
        )
    others = [name for name in names if not name.endswith(".npy")]
    if others:
        raise UsageError(
            f"{path} is a zip archive but not a .npz: it holds files that "
            f"are not .npy arrays ({', '.join(others[:3])})"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # numpy raises many types for bad files.
        raise UsageError(f"cannot read data file {path}: {error}") from error
    if not arrays:
        raise UsageError(f"{path} is an empty .npz archive: it holds no arrays")
    return arrays


def _kind_of(magic):
    """What a file starting with the bytes `magic` is, if it is known."""
    if magic.startswith(b"\x93NUMPY"):
        return (
            ": it is a .npy file, a single array (numpy.savez(path, x=array) "
            "saves one in a .npz archive)"
        )
    if magic == _HDF5_MAGIC:
        return ": it is an HDF5 file (a .h5 model file?)"
    return " (numpy.savez writes one)"


def _check_readable(path, what):
    """Raises a `UsageError` unless `path` is a regular file one may read.

    The file is looked at (`os.stat`, through symlinks), not opened: a
    FIFO, a device or a socket would block a reader or never end.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"no such {what}: {path}") from None
    except OSError as error:
        raise UsageError(
            f"cannot read {what} {path}: {error.strerror}"
        ) from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a directory, not a {what}")
    if not stat.S_ISREG(mode):
        raise UsageError(
            f"{path} is {_special_kind(mode)}, not a regular file: cannot "
            f"read it as a {what}"
        )
    if not os.access(path, os.R_OK):
        raise UsageError(f"cannot read {what} {path}: permission denied")


def _special_kind(mode):
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "a special file"


def _is_model_container(path):
    if path.endswith(".keras"):
        return zipfile.is_zipfile(path)
    with open(path, "rb") as file:
        return file.read(8) == _HDF5_MAGIC


def _zip_names(path):
    """The names of the members of the zip archive at `path`, or `None`."""
    with (
        contextlib.suppress(zipfile.BadZipFile, OSError),
        zipfile.ZipFile(path) as archive,
    ):
        return archive.namelist()
    return None


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
