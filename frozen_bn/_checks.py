"""The argument checks every public function shares, with Keras-style errors."""

import reprlib
import sys

import keras


def is_tf_keras_model(model):
    """Whether `model` is a tf_keras model (never imports tf_keras)."""
    if "tf_keras" not in sys.modules:
        return False
    import tf_keras

    return isinstance(model, tf_keras.Model)


def runs_on_tensorflow(model):
    """Whether `model` runs TF ops: a tf_keras model, or Keras 3 on TF."""
    return is_tf_keras_model(model) or keras.backend.backend() == "tensorflow"


def check_model(model):
    """Raises unless `model` is a built Keras 3 or tf_keras model."""
    if not (isinstance(model, keras.Model) or is_tf_keras_model(model)):
        raise TypeError(
            "Expected `model` to be a keras.Model (or a tf_keras Model). "
            f"Received: model={reprlib.repr(model)} of type "
            f"{type(model).__name__}"
        )
    if not model.built:
        raise ValueError(
            f"`model` ({model.name!r}) is not built yet, so it has no "
            "weights or statistics. Build it first: call it on a batch of "
            "data, call `model.build(input_shape)`, or start a Sequential "
            "model with `keras.Input(shape)`."
        )
