"""Fine-tuning under `tf.distribute.MirroredStrategy`, stock vs frozen_bn.

Splits the CPU into two logical devices and trains with one replica on each,
as a user with two GPUs would. A small conv base is pretrained on half of
scikit-learn's digits (10 classes); a new task ("is the digit >= 5?") comes
with low-contrast images (`x' = 0.4 x + 0.5`), whose statistics differ from
the ones stored in the base's BatchNormalization layers. Fine-tuning follows
the 2018 "Keras BN layer is broken" experiment (Datumbox) and the Keras
transfer-learning guide, everything inside `strategy.scope()`:

1. a new top on the frozen base (`base(x, training=False)`,
   `base.trainable = False`), RMSprop;
2. the base's last block unfrozen (`base.trainable = True`), SGD(1e-4,
   momentum=0.9).

For the stock layers and for the same model patched with
`frozen_bn.patch_model`, it prints the held-out accuracy in inference mode
and in training mode, how far the base's moving statistics moved, and
whether the two replicas' copies of them still agree. frozen_bn's row
should read the same accuracy in both modes, no drift, and replicas that
agree.

Run: python examples/distributed_finetune.py [--quick]
"""

import argparse
import os

os.environ["KERAS_BACKEND"] = "tensorflow"  # MirroredStrategy is TF's

import tensorflow as tf  # noqa: E402

# Before TensorFlow starts its runtime: two logical CPUs, one per replica.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * 2,
)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import frozen_bn  # noqa: E402

SEED = 0
BATCH_SIZE = 32  # global: 16 per replica
# Epochs of pretraining, of stage 1 and of stage 2; --quick runs fewer.
EPOCHS = {"full": (8, 10, 3), "quick": (3, 3, 1)}


def load_data():
    """Source (10 classes) and shifted target splits of the digits."""
    digits = load_digits()
    images = (digits.images.astype("float32") / 16.0)[..., None]
    order = np.random.default_rng(SEED).permutation(len(images))
    source, train, test = np.split(
        order, [len(order) // 2, 3 * len(order) // 4]
    )

    def target(part):
        return 0.4 * images[part] + 0.5, (digits.target[part] >= 5) * 1.0

    # Whole batches only: a last batch smaller than the number of replicas
    # leaves a replica with no images, which Keras's Conv2D cannot take.
    source, train = (
        part[: len(part) // BATCH_SIZE * BATCH_SIZE] for part in (source, train)
    )
    return (images[source], digits.target[source]), target(train), target(test)


def conv_base():
    inputs = keras.Input((8, 8, 1))
    x = inputs
    for block, filters in enumerate((16, 32), start=1):
        for conv in (1, 2):
            name = f"block{block}_conv{conv}"
            x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
            # Momentum 0.9: the statistics settle within our short pretraining.
            x = keras.layers.BatchNormalization(
                momentum=0.9, name=f"{name}_bn"
            )(x)
            x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    return keras.Model(inputs, x, name="base")


def with_top(base, units, activation, training=None):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(base(inputs, training=training))
    outputs = keras.layers.Dense(units, activation=activation)(x)
    return keras.Model(inputs, outputs)


def pretrain(strategy, source, epochs):
    with strategy.scope():
        base = conv_base()
        model = with_top(base, 10, "softmax")
        model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*source, batch_size=BATCH_SIZE, epochs=epochs, verbose=2)
    return base.get_weights()


def fine_tune(strategy, weights, train, patched, epochs):
    """The experiment's two stages; returns the model and its base's statistics.

    The statistics are each replica's copies, before and after training.
    """
    with strategy.scope():
        base = conv_base()
        base.set_weights(weights)
        base.trainable = False
        model = with_top(base, 1, "sigmoid", training=False)
        if patched:
            model = frozen_bn.patch_model(model)
            base = model.get_layer("base")
        model.compile(keras.optimizers.RMSprop(), "binary_crossentropy")
    before = statistics(base)
    model.fit(*train, batch_size=BATCH_SIZE, epochs=epochs[0], verbose=2)
    base.trainable = True
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block2")
    with strategy.scope():
        model.compile(
            keras.optimizers.SGD(1e-4, momentum=0.9), "binary_crossentropy"
        )
    model.fit(*train, batch_size=BATCH_SIZE, epochs=epochs[1], verbose=2)
    return model, before, statistics(base)


def statistics(base):
    """Each replica's copy of every BN moving statistic in `base`."""
    return [
        [copy.numpy() for copy in variable.value.values]
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    ]


def accuracy(model, test, training):
    x, y = test
    p = keras.ops.convert_to_numpy(model(x, training=training))
    return float(np.mean((p.ravel() > 0.5) == (y == 1)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    epochs = EPOCHS["quick" if parser.parse_args().quick else "full"]
    keras.utils.set_random_seed(SEED)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    source, train, test = load_data()
    print("Pretraining the base on the digits:")
    weights = pretrain(strategy, source, epochs[0])
    rows = []
    for name, patched in (("stock keras", False), ("frozen_bn", True)):
        print(f"Fine-tuning, {name} (stage 1, then stage 2):")
        model, before, after = fine_tune(
            strategy, weights, train, patched, epochs[1:]
        )
        drift = max(
            float(np.max(np.abs(a[0] - b[0])))
            for a, b in zip(after, before, strict=True)
        )
        agree = all(np.array_equal(*copies) for copies in after)
        snapshot = model.get_weights()
        row = (
            accuracy(model, test, training=False),
            accuracy(model, test, training=True),
        )
        model.set_weights(snapshot)  # training mode moved stock statistics
        rows.append((name, *row, drift, "agree" if agree else "DIFFER"))
    print(
        f"\nKeras {keras.__version__}, MirroredStrategy with "
        f"{strategy.num_replicas_in_sync} replicas on {BATCH_SIZE // 2} "
        "images each per step\n"
    )
    header = ("", "inference acc", "training acc", "stat drift", "replicas")
    print(f"{header[0]:<24}{''.join(f'{h:>15}' for h in header[1:])}")
    for name, inference, training, drift, replicas in rows:
        print(
            f"{name:<24}{inference:>15.3f}{training:>15.3f}{drift:>15.4f}"
            f"{replicas:>15}"
        )
    print(
        "\nStock Keras lets fit() override the recorded training=False once "
        "the base is trainable:\nthe unfrozen block normalizes with the "
        "batch statistics of the shifted images, and\neach replica moves "
        "its own copy of the moving statistics. frozen_bn keeps the stored\n"
        "statistics in both modes, on every replica."
    )


if __name__ == "__main__":
    main()
