"""Reading and writing the files the `frozen-bn` subcommands take."""

import os

from frozen_bn.cli._command import UsageError


def load_model_file(path):
    """Loads a `.keras` or `.h5` model file, with errors a user can act on."""
    if not os.path.isfile(path):
        raise UsageError(f"no such model file: {path}")
    if not path.endswith((".keras", ".h5")):
        raise UsageError(f"expected a .keras or .h5 model file, got: {path}")
    import keras

    # Registers our layers for loading (under `frozen-bn`, `import
    # frozen_bn` imports nothing: see `frozen_bn/__init__.py`).
    import frozen_bn.layers  # noqa: F401

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for bad files.
        raise UsageError(f"cannot read model file {path}: {error}") from error


def save_model_file(model, path):
    """Saves `model` to a `.keras` or `.h5` path in an existing directory."""
    if not path.endswith((".keras", ".h5")):
        raise UsageError(f"expected a .keras or .h5 output path, got: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"output directory does not exist: {directory}")
    model.save(path)


def load_arrays(args):
    """The inputs and labels named by `args` in the .npz file `args.data`."""
    import numpy as np

    if not os.path.isfile(args.data):
        raise UsageError(f"no such data file: {args.data}")
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
