"""The formats `frozen_bn.export` writes on each Keras backend, as tested.

Kept apart from `frozen_bn.exporting`, which imports Keras, so that the
command line lists them without starting a backend.
"""

FORMATS = {
    "tensorflow": ("tf_saved_model", "onnx", "litert"),
    "jax": ("tf_saved_model", "onnx"),
    "torch": ("onnx",),
}
# Every format some backend writes, in the order above.
ALL_FORMATS = tuple(dict.fromkeys(sum(FORMATS.values(), ())))
