"""The transfer-learning guide's pattern, and what each Keras release does
with it.

Tests state the expected behaviour from the release number, so that they
check frozen_bn's measurement of it (`frozen_bn._training_arg`) instead of
trusting it.
"""

import keras
import numpy as np

from tests.helpers import moving_statistics

_RELEASE = tuple(int(part) for part in keras.version().split(".")[:2])

# Keras 3.16 honours a nested model's recorded `training=False` under
# `fit()` (3.0 to 3.15 override it), and passes it on to every layer called
# after it in the same forward pass.
HONOURS_TRAINING_FALSE = _RELEASE >= (3, 16)
LEAKS_TRAINING_FALSE = _RELEASE >= (3, 16)
# Keras 3.16 also runs a call recorded with `training=None` in inference
# mode under `fit()` (3.15 in training mode), and no longer lets a layer's
# `training=True` default reach the layers after it in a call without
# `training` (keras-team/keras#23166).
HONOURS_TRAINING_NONE = _RELEASE >= (3, 16)
SPREADS_TRAINING_DEFAULT = _RELEASE < (3, 16)
# Keras <= 3.15 runs a JAX training step through `Model.call`, outside the
# call context that tells a layer which model is being fitted.
FIT_CALL_CONTEXT_NAMES_THE_MODEL = not (
    keras.backend.backend() == "jax" and _RELEASE < (3, 16)
)


def guide_model(recorded=False):
    """`inputs -> BN -> base(training=recorded) -> BN -> Dropout -> Dense`.

    `recorded=None` is what code that forwards its own `training` argument
    records.
    """
    base_inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="base_dense")(base_inputs)
    x = keras.layers.BatchNormalization(name="base_bn")(x)
    base = keras.Model(base_inputs, x, name="base")
    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(name="before_bn")(inputs)
    x = base(x, training=recorded)
    x = keras.layers.BatchNormalization(name="after_bn")(x)
    x = keras.layers.Dropout(0.5, name="after_dropout")(x)
    outputs = keras.layers.Dense(1, name="head")(x)
    return keras.Model(inputs, outputs)


def moving_means(model):
    layers = {
        "before_bn": model.get_layer("before_bn"),
        "base_bn": model.get_layer("base").get_layer("base_bn"),
        "after_bn": model.get_layer("after_bn"),
    }
    return {
        name: moving_statistics(layer)[0][0] for name, layer in layers.items()
    }


def moved_under_fit(model):
    """Which BN layers' moving means `fit()` changes, by layer name."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    before = moving_means(model)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    after = moving_means(model)
    return {
        name: not np.array_equal(after[name], before[name]) for name in after
    }


def dropout_rate_in_training(model):
    """The fraction of zeros after `after_dropout` in a training call."""
    upto_dropout = keras.Model(
        model.inputs[0], model.get_layer("after_dropout").output
    )
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    outputs = keras.ops.convert_to_numpy(upto_dropout(x, training=True))
    return float(np.mean(outputs == 0.0))


def augmented_conv_net():
    """`RandomFlip -> Conv2D -> BN -> pooling -> Dense`, the BN's moving
    mean far from its inputs' mean: a model with augmentation inside."""
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.RandomFlip("horizontal", name="flip")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    bn = keras.layers.BatchNormalization(name="bn")
    x = bn(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="head")(x))
    bn.moving_mean.assign(np.full((4,), 3.0, "float32"))
    return model
