"""Fine-tunes the top of a pretrained CNN on cached features of its bottom.

The protocol: pretrain a small Conv+BN+ReLU network on the digits 0-4 of
scikit-learn's digits data (no download), then move it to a new task, the
digits 5-9, by fine-tuning only its last block and a new classifier
("fine-tune from layer k+1"). Instead of running the frozen bottom in every
epoch, `frozen_bn.split_model` cuts the network after block 2,
`frozen_bn.cache_features` runs the bottom once, and the top trains on the
stored features. `frozen_bn.join` then gives one model to evaluate and save.
It prints the test accuracy on the new task, which should pass 0.9 (0.8
with `--quick`).

Run: python examples/cached_finetune.py [--quick]
(KERAS_BACKEND picks the backend.)
"""

import argparse
import os
import tempfile
import time

# Quiet TensorFlow's start-up lines unless you set a level; frozen_bn, imported
# before Keras starts TensorFlow, holds even its first lines to that level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import frozen_bn  # noqa: E402, I001
import keras  # noqa: E402
import numpy as np
from sklearn.datasets import load_digits


# Pretraining and head epochs; --quick runs fewer.
EPOCHS = {"full": (10, 20), "quick": (3, 15)}
# Dense(5) has no activation: the losses read its outputs as logits.
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def conv_block(x, filters, name):
    x = keras.layers.Conv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_conv"
    )(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_out")(x)


def backbone():
    inputs = keras.Input((8, 8, 1), name="digits")
    x = conv_block(inputs, 32, "block1")
    x = conv_block(x, 64, "block2")
    x = conv_block(x, 64, "block3")
    return inputs, keras.layers.GlobalAveragePooling2D(name="pool")(x)


def split_digits(images, labels, wanted):
    keep = np.isin(labels, wanted)
    x, y = images[keep], labels[keep] - min(wanted)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    source_epochs, head_epochs = EPOCHS[
        "quick" if parser.parse_args().quick else "full"
    ]
    keras.utils.set_random_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    (source_x, source_y), _ = split_digits(
        images, digits.target, [0, 1, 2, 3, 4]
    )
    (train_x, train_y), (test_x, test_y) = split_digits(
        images, digits.target, [5, 6, 7, 8, 9]
    )

    inputs, features = backbone()
    source = keras.Model(
        inputs, keras.layers.Dense(5, name="source_classes")(features)
    )
    source.compile("adam", LOSS, metrics=["accuracy"])
    print(f"1. Pretraining on digits 0-4 ({len(source_x)} images):")
    source.fit(
        source_x, source_y, epochs=source_epochs, batch_size=32, verbose=2
    )

    # The new task reuses the pretrained layers with a new classifier.
    model = keras.Model(
        inputs, keras.layers.Dense(5, name="target_classes")(features)
    )
    base, head = frozen_bn.split_model(model, "block2_out")
    base.trainable = False
    print(
        f"2. Split after 'block2_out': the frozen base has "
        f"{len(base.layers)} layers, the trained head {len(head.layers)}; "
        f"cut points: {frozen_bn.cut_points(model)}"
    )

    start = time.perf_counter()
    train_features = frozen_bn.cache_features(base, train_x, verbose=0)
    test_features = frozen_bn.cache_features(base, test_x, verbose=0)
    print(
        f"3. Cached features {train_features.shape} for training and "
        f"{test_features.shape} for testing in "
        f"{time.perf_counter() - start:.1f}s (one pass of the base)."
    )

    head.compile("adam", LOSS, metrics=["accuracy"])
    print("4. Training the head on the cached features:")
    start = time.perf_counter()
    head.fit(
        train_features, train_y, epochs=head_epochs, batch_size=32, verbose=2
    )
    _, head_accuracy = head.evaluate(test_features, test_y, verbose=0)
    print(
        f"   Trained the head for {head_epochs} epochs on the cache in "
        f"{time.perf_counter() - start:.1f}s: test accuracy on digits 5-9 "
        f"{head_accuracy:.3f}."
    )

    joined = frozen_bn.join(base, head, name="finetuned")
    joined.compile("adam", LOSS, metrics=["accuracy"])
    _, joined_accuracy = joined.evaluate(test_x, test_y, verbose=0)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "finetuned.keras")
        joined.save(path)
        reloaded = keras.models.load_model(path)
        same = np.allclose(
            reloaded.predict(test_x, verbose=0),
            joined.predict(test_x, verbose=0),
            rtol=1e-5,
            atol=1e-6,
        )
    print(
        f"5. Joined base and head into one model: test accuracy "
        f"{joined_accuracy:.3f} on the raw images (the head alone: "
        f"{head_accuracy:.3f}); saved and reloaded it, same predictions: "
        f"{same}."
    )


if __name__ == "__main__":
    main()
