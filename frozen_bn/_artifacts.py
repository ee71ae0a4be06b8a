"""Running an exported model in its own runtime, and what that needs.

Each format is run by the runtime that serves it, not by Keras: a
SavedModel by TensorFlow's loader, an ONNX file by onnxruntime, a LiteRT
file by `ai_edge_litert`'s interpreter. The runtimes are imported only when
an artifact is run, and are the optional `[export]` extra.
"""

import importlib.util

import keras
import numpy as np

# The module each format's runtime is imported from, and its pip package.
RUNTIMES = {
    "tf_saved_model": ("tensorflow", "tensorflow"),
    "onnx": ("onnxruntime", "onnxruntime"),
    "litert": ("ai_edge_litert", "ai-edge-litert"),
}


def missing_runtime(format):
    """The pip package that running a `format` artifact needs, if missing."""
    module, package = RUNTIMES[format]
    return None if importlib.util.find_spec(module) else package


def run(filepath, format, inputs):
    """The outputs of the artifact at `filepath` on `inputs`.

    Inputs are matched to the artifact's by name, never by position: the
    runtimes list them in orders of their own (LiteRT's interpreter by
    tensor index, tf2onnx in sorted order). A SavedModel's `serve` takes
    them by the names of its input signature, an ONNX session by its
    input names, a LiteRT file through its signature runner, by the names
    of its serving signature. An artifact of one input takes one array
    whatever its input's name.

    Args:
        filepath: The exported artifact.
        format: Its format, a key of `RUNTIMES`.
        inputs: A NumPy array (the one input), or a dict of them keyed by
            input name.

    Returns:
        The outputs as a list of NumPy arrays, in `keras.tree.flatten`
        order of the model's outputs.

    Raises:
        ValueError: The file is not an artifact of `format` that its
            runtime loads, or its inputs are not named as `inputs`.
    """
    try:
        artifact = _LOADERS[format](filepath)
    except Exception as error:  # Each runtime raises errors of its own.
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"Expected `filepath` to be a {format} artifact that "
            f"{RUNTIMES[format][1]} loads; it is not "
            f"({type(error).__name__}: {reason}). Received: "
            f"filepath={filepath!r}, format={format!r}"
        ) from error
    return _RUNNERS[format](artifact, inputs)


def _feed(names, inputs):
    """`inputs` keyed by the artifact's input `names`, matched by name."""
    if not isinstance(inputs, dict):
        inputs = {None: inputs}
    if len(names) == len(inputs) == 1:
        return {names[0]: next(iter(inputs.values()))}
    if sorted(names) != sorted(inputs):
        raise ValueError(
            f"The artifact's inputs are named {sorted(names)}; the model's "
            f"are {sorted(inputs)}. Is it an export of this model?"
        )
    return {name: inputs[name] for name in names}


def _load_saved_model(filepath):
    import tensorflow as tf

    artifact = tf.saved_model.load(filepath)  # Held while `serve` runs.
    # Keras traces `serve` once; its signature names each input.
    args, _ = artifact.serve.concrete_functions[0].structured_input_signature
    return artifact, args


def _run_saved_model(loaded, inputs):
    import tensorflow as tf

    artifact, args = loaded
    specs = tf.nest.flatten(args)
    feed = _feed([spec.name for spec in specs], inputs)
    arguments = tf.nest.pack_sequence_as(
        args, [feed[spec.name] for spec in specs]
    )
    outputs = artifact.serve(*arguments)
    return [np.asarray(output) for output in keras.tree.flatten(outputs)]


def _load_onnx(filepath):
    import onnxruntime

    return onnxruntime.InferenceSession(
        filepath, providers=["CPUExecutionProvider"]
    )


def _run_onnx(session, inputs):
    names = [spec.name for spec in session.get_inputs()]
    return session.run(None, _feed(names, inputs))


def _load_litert(filepath):
    from ai_edge_litert.interpreter import Interpreter

    # Keras writes one signature, "serving_default", naming every input.
    return Interpreter(model_path=filepath).get_signature_runner()


def _run_litert(runner, inputs):
    outputs = runner(**_feed(list(runner.get_input_details()), inputs))
    return [outputs[name] for name in sorted(outputs, key=_output_order)]


def _output_order(name):
    """Keras names a signature's outputs `output_0`, `output_1`, ... (a
    dict's by its keys): sorted by number, not as strings."""
    prefix, _, number = name.rpartition("_")
    if prefix == "output" and number.isdigit():
        return ("", int(number))
    return (name, 0)


_LOADERS = {
    "tf_saved_model": _load_saved_model,
    "onnx": _load_onnx,
    "litert": _load_litert,
}
_RUNNERS = {
    "tf_saved_model": _run_saved_model,
    "onnx": _run_onnx,
    "litert": _run_litert,
}
