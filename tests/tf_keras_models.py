"""Small tf_keras models and checks shared by the eager and graph-mode tests.

Imported only by test modules that already require tf_keras.
"""

import numpy as np
import tf_keras

import frozen_bn.tf_keras
from frozen_bn import _walk

STOCK_V2, STOCK_V1 = _walk.tf_keras_batch_norm_classes()
# Each stock class and the frozen_bn class that `patch_model` swaps in.
PATCHED_CLASSES = {
    STOCK_V2: frozen_bn.tf_keras.BatchNormalization,
    STOCK_V1: frozen_bn.tf_keras.BatchNormalizationV1,
}
BN_CONFIGS = {
    "fused": {"fused": True},
    "non_fused": {"fused": False},
    "virtual_batch": {"fused": False, "virtual_batch_size": 4},
    "renorm": {"fused": False, "renorm": True},
}


def targets(count=16):
    return (
        np.random.default_rng(7).standard_normal((count, 1)).astype("float32")
    )


def conv_net(bn_class, name="net", **bn_config):
    """Conv -> BN (named "bn") -> pooling -> Dense, with moved statistics."""
    inputs = tf_keras.Input((8, 8, 3))
    x = tf_keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = bn_class(name="bn", **bn_config)(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(1)(x), name=name)
    bn = model.get_layer("bn")
    rng = np.random.default_rng(3)
    bn.set_weights(
        [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in bn.weights]
    )
    return model


def nested_net(bn_class):
    """A Functional model calling a Sequential base, both with BN layers."""
    base = tf_keras.Sequential(
        [
            tf_keras.Input((8, 8, 3)),
            tf_keras.layers.Conv2D(4, 3),
            bn_class(name="base_bn"),
            tf_keras.layers.ReLU(),
        ],
        name="base",
    )
    inputs = tf_keras.Input((8, 8, 3))
    x = base(inputs)
    x = bn_class(name="head_bn", fused=False)(x)
    x = tf_keras.layers.GlobalAveragePooling2D()(x)
    return tf_keras.Model(inputs, tf_keras.layers.Dense(1)(x))


def bn_state(model):
    """Class and `trainable` flag of every BN layer, in order."""
    return [
        (layer.name, type(layer), layer.trainable)
        for layer in _walk.batch_norm_layers(model)
    ]
