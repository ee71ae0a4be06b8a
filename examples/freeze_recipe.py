"""The two-stage fine-tuning recipe, written with `frozen_bn.freeze`.

The recipe of the 2018 "Keras BN layer is broken" experiment: train a new
classifier on a frozen pretrained base, then fine-tune the base's last
stage too, with its BatchNormalization statistics kept. The base is a
keras.applications MobileNetV2 (`weights=None`: no download; load your own
pretrained weights in a real run), the data random images.

Run: KERAS_BACKEND=jax python examples/freeze_recipe.py
"""

import keras
import numpy as np

import frozen_bn


def main():
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(64, 64, 3), alpha=0.35
    )
    inputs = keras.Input((64, 64, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (64, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 2, (64, 1)).astype("float32")

    # Stage 1: everything up to the base is frozen, the classifier trains.
    model = frozen_bn.freeze(model, up_to="mobilenetv2_0.35_64")
    model.compile(keras.optimizers.RMSprop(1e-3), "binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    # Stage 2: the base's last stages train too, its BN statistics fixed
    # (the default policy, batch_norm="freeze_statistics").
    last_frozen = frozen_bn.stages(base)[-3]
    frozen_bn.freeze(
        model.get_layer(base.name), up_to=last_frozen.last, inplace=True
    )
    model.compile(
        keras.optimizers.SGD(1e-4, momentum=0.9), "binary_crossentropy"
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    summary = frozen_bn.freeze_summary(model.get_layer(base.name))
    print(summary.to_text())


if __name__ == "__main__":
    main()
