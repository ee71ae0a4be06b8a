"""Quick start: a frozen BatchNormalization under fit(), stock vs frozen_bn.

Builds a small pretrained-style conv base, then fine-tunes a new head on data
whose statistics differ from the base's (low contrast: x' = 0.4 x + 0.5) with
the Keras transfer-learning guide's pattern:

    base.trainable = True
    outputs = head(base(inputs, training=False))

and prints, for the stock layers and for the same model patched with
`frozen_bn.patch_model`, how far the base's moving statistics moved and how
far training-mode outputs are from inference-mode outputs. On Keras 3.15
the patched row reads 0 in both columns: the frozen statistics did not move
and the two modes agree.

Run: python examples/quickstart.py [--quick]
"""

import argparse
import os

# Quiet TensorFlow's start-up lines unless you set a level; frozen_bn, imported
# before Keras starts TensorFlow, holds even its first lines to that level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import frozen_bn  # noqa: E402, I001
import keras  # noqa: E402
import numpy as np


SEED = 0


def conv_base():
    inputs = keras.Input((16, 16, 1))
    x = inputs
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    return keras.Model(inputs, x, name="base")


def guide_model(base):
    base.trainable = True
    inputs = keras.Input((16, 16, 1))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x))


def moving_means(model):
    return [
        keras.ops.convert_to_numpy(layer.moving_mean)
        for layer in model.get_layer("base").layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]


def fine_tune(model, x, y, epochs):
    before = moving_means(model)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01), loss="binary_crossentropy"
    )
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=2)
    drift = max(
        float(np.max(np.abs(a - b)))
        for a, b in zip(moving_means(model), before, strict=True)
    )
    train_mode = keras.ops.convert_to_numpy(model(x[:64], training=True))
    inference = keras.ops.convert_to_numpy(model(x[:64], training=False))
    return drift, float(np.max(np.abs(train_mode - inference)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one epoch")
    epochs = 1 if parser.parse_args().quick else 2
    keras.utils.set_random_seed(SEED)
    rng = np.random.default_rng(SEED)
    source = rng.normal(size=(512, 16, 16, 1)).astype("float32")
    base = conv_base()
    # "Pretraining": let the base's statistics settle on the source data.
    for _ in range(20):
        base(source[:128], training=True)
    target = (0.4 * rng.normal(size=(256, 16, 16, 1)) + 0.5).astype("float32")
    labels = (target.mean(axis=(1, 2, 3)) > 0.5).astype("float32")

    stock = guide_model(base)
    patched = frozen_bn.patch_model(stock)  # a patched copy; stock untouched
    rows = []
    for name, model in (
        ("stock keras", stock),
        ("frozen_bn.patch_model", patched),
    ):
        print(f"Fine-tuning, {name}:")
        rows.append((name, *fine_tune(model, target, labels, epochs)))

    print(f"\nKeras {keras.__version__}, backend {keras.backend.backend()}")
    print("Guide pattern: base.trainable = True; base(x, training=False)\n")
    print(
        f"{'model':<24}{'max moving-mean drift':>24}{'train/inference gap':>22}"
    )
    for name, drift, gap in rows:
        print(f"{name:<24}{drift:>24.6f}{gap:>22.6f}")
    stock_drift = rows[0][1]
    if stock_drift > 0:
        print(
            "\nThis Keras lets fit() override the recorded training=False, so "
            "the base's statistics drift\nand training-mode outputs differ "
            "from inference outputs; the patched base keeps its\nstatistics "
            "(freeze_moving_stats=True was set on exactly those layers) and "
            "both modes agree."
        )
    else:
        print(
            "\nThis Keras (3.16 or later) keeps the recorded training=False "
            "under fit(): the stock base\nkeeps its statistics too. Its "
            "layers after the base would stop training: see the\ndocs, "
            "'Does my Keras leak training=False?' (docs/index.md)."
        )


if __name__ == "__main__":
    main()
