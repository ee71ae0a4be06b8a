"""The two-stage fine-tuning recipe, written with `frozen_bn.freeze`.

The recipe of the 2018 "Keras BN layer is broken" experiment: train a new
classifier on a frozen pretrained base, then fine-tune the base's last
stages too, with its BatchNormalization statistics kept. The base is a
keras.applications MobileNetV2 (`weights=None`: no download; load your own
pretrained weights in a real run), the data random images, so the accuracy
means nothing here: what the recipe guarantees is what the script checks
and prints, that no moving statistic of the base changed in either stage
(every one of its BN layers keeps its statistics, frozen or training) and
that the frozen stages' weights did not change either, while the last
stages trained.

Run: python examples/freeze_recipe.py [--quick]
(KERAS_BACKEND picks the backend.)
"""

import argparse
import os

# Quiet TensorFlow's start-up lines unless you set a level; frozen_bn, imported
# before Keras starts TensorFlow, holds even its first lines to that level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import frozen_bn  # noqa: E402, I001
import keras  # noqa: E402
import numpy as np


def values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def unchanged(before, after):
    return all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller images")
    side = 32 if parser.parse_args().quick else 64
    base = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(side, side, 3), alpha=0.35
    )
    inputs = keras.Input((side, side, 3))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (64, side, side, 3)).astype("float32")
    y = rng.integers(0, 2, (64, 1)).astype("float32")

    # Stage 1: everything up to the base is frozen, the classifier trains.
    model = frozen_bn.freeze(model, up_to=base.name)
    base = model.get_layer(base.name)
    statistics = [
        v
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for v in (layer.moving_mean, layer.moving_variance)
    ]
    statistics_before = values(statistics)
    print("Stage 1: the classifier trains on the frozen base.")
    model.compile(keras.optimizers.RMSprop(1e-3), "binary_crossentropy")
    model.fit(x, y, batch_size=16, epochs=1, verbose=2)

    # Stage 2: the base's last stages train too, its BN statistics fixed
    # (the default policy, batch_norm="freeze_statistics").
    last_frozen = frozen_bn.stages(base)[-3]
    frozen_bn.freeze(base, up_to=last_frozen.last, inplace=True)
    frozen = [w for w in base.weights if not w.trainable]
    trained = base.trainable_weights
    frozen_before, trained_before = values(frozen), values(trained)
    print(f"Stage 2: the base trains after {last_frozen.last!r} too.")
    model.compile(
        keras.optimizers.SGD(1e-4, momentum=0.9), "binary_crossentropy"
    )
    model.fit(x, y, batch_size=16, epochs=1, verbose=2)

    print(frozen_bn.freeze_summary(base).to_text())
    print(
        f"moving statistics of the base's {len(statistics) // 2} BN layers "
        f"unchanged: {unchanged(statistics_before, values(statistics))}"
    )
    print(
        f"frozen weights unchanged: {unchanged(frozen_before, values(frozen))}"
        f"; trained weights changed: "
        f"{not unchanged(trained_before, values(trained))}"
    )


if __name__ == "__main__":
    main()
