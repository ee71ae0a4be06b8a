"""Which Keras a model belongs to, and how that Keras runs it.

Keras 3 and tf_keras (Keras 2) models are handled alike almost everywhere;
these are the few questions whose answers differ. None of them imports
tf_keras or TensorFlow unless the answer needs it.
"""

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


def builds_static_graphs():
    """Whether tf_keras runs in TF1 graph mode in this process.

    There, calling a layer adds its behaviour to a graph once and for all
    (`tf.compat.v1.disable_v2_behavior()`), so a model built with stock
    layers keeps their behaviour even after its layers change class.
    """
    import tensorflow as tf

    return not tf.compat.v1.executing_eagerly_outside_functions()
