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

    Args:
        filepath: The exported artifact.
        format: Its format, a key of `RUNTIMES`.
        inputs: A NumPy array, or a list or dict of them, shaped as the
            exported model's inputs.

    Returns:
        The outputs as a list of NumPy arrays, in `keras.tree.flatten`
        order of the model's outputs.
    """
    return _RUNNERS[format](filepath, inputs)


def _run_saved_model(filepath, inputs):
    import tensorflow as tf

    artifact = tf.saved_model.load(filepath)  # Held while `serve` runs.
    outputs = artifact.serve(inputs)
    return [np.asarray(output) for output in keras.tree.flatten(outputs)]


def _run_onnx(filepath, inputs):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        filepath, providers=["CPUExecutionProvider"]
    )
    names = [spec.name for spec in session.get_inputs()]
    feed = dict(zip(names, keras.tree.flatten(inputs), strict=True))
    return session.run(None, feed)


def _run_litert(filepath, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=filepath)
    details = interpreter.get_input_details()
    arrays = keras.tree.flatten(inputs)
    for detail, array in zip(details, arrays, strict=True):
        interpreter.resize_tensor_input(detail["index"], array.shape)
    interpreter.allocate_tensors()
    for detail, array in zip(details, arrays, strict=True):
        interpreter.set_tensor(detail["index"], array)
    interpreter.invoke()
    return [
        interpreter.get_tensor(detail["index"])
        for detail in interpreter.get_output_details()
    ]


_RUNNERS = {
    "tf_saved_model": _run_saved_model,
    "onnx": _run_onnx,
    "litert": _run_litert,
}
