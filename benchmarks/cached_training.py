"""Benchmark: training the head on cached features vs the full model.

A ResNet50 (`weights=None`, 64x64 inputs) with a new classifier is
fine-tuned on digits from scikit-learn (upscaled to 64x64 RGB), from the
whole last stage (cut after `conv4_block6_out`), from its last block (cut
after `conv5_block2_out`), or the classifier alone (cut after the last
stage, `conv5_block3_out`). Side by side, in one process per backend, from
the same initial weights:

- full: the whole model trains with every layer up to the cut frozen
  (`trainable = False`), so each epoch runs the frozen base again;
- cached: `split_model` cuts the model there, `cache_features` runs the base
  once, and the head (the same layers) trains on the stored features.

Printed per backend and cut: the median epoch time of each side (the first
epoch, which compiles, excluded), their ratio, the total time for all epochs
(including the caching pass), and the test accuracy of each side.

Run: python benchmarks/cached_training.py [--backends tensorflow jax torch]
"""

import statistics
import time

from _harness import main

# The whole last stage trains, its last block, or the classifier alone.
CUTS = ("conv4_block6_out", "conv5_block2_out", "conv5_block3_out")
SIZE = 64


def epoch_timer():
    """A callback recording the wall time of each epoch of `fit()`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    return EpochTimer()


def digits(images):
    """Train and test digits, upscaled to SIZE x SIZE x 3, as float32."""
    import numpy as np
    from sklearn.datasets import load_digits

    data = load_digits()
    scale = SIZE // 8
    x = data.images.repeat(scale, axis=1).repeat(scale, axis=2) / 16.0
    x = np.repeat(x[..., None], 3, axis=-1).astype("float32")
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], data.target[order]
    test = slice(images, images + images // 2)
    return (x[:images], y[:images]), (x[test], y[test])


def build_model():
    import keras

    backbone = keras.applications.ResNet50(
        weights=None, include_top=False, input_shape=(SIZE, SIZE, 3)
    )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    outputs = keras.layers.Dense(10, name="classes")(x)
    return keras.Model(backbone.input, outputs)


def train(model, x, y, test_x, test_y, epochs):
    import keras

    model.compile(
        keras.optimizers.Adam(1e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = epoch_timer()
    keras.utils.set_random_seed(1)  # The same shuffling on both sides.
    model.fit(x, y, batch_size=32, epochs=epochs, callbacks=[timer], verbose=0)
    _, accuracy = model.evaluate(test_x, test_y, batch_size=32, verbose=0)
    return timer.times, accuracy


def measure_cut(cut_name, args):
    """Both sides on the current backend, for one cut."""
    import keras

    import frozen_bn

    keras.utils.set_random_seed(0)
    (x, y), (test_x, test_y) = digits(args.images)
    model = build_model()
    initial = model.get_weights()
    cut = [layer.name for layer in model.layers].index(cut_name)
    for layer in model.layers[: cut + 1]:
        layer.trainable = False
    full_times, full_accuracy = train(model, x, y, test_x, test_y, args.epochs)

    model.set_weights(initial)
    base, head = frozen_bn.split_model(model, cut_name)
    start = time.perf_counter()
    features = frozen_bn.cache_features(base, x, verbose=0)
    test_features = frozen_bn.cache_features(base, test_x, verbose=0)
    caching = time.perf_counter() - start
    head_times, head_accuracy = train(
        head, features, y, test_features, test_y, args.epochs
    )
    full_epoch = statistics.median(full_times[1:])  # The first compiles.
    head_epoch = statistics.median(head_times[1:])
    cached_total = caching + sum(head_times)
    return {
        "backend": keras.backend.backend(),
        "cut": cut_name,
        "full s/epoch": full_epoch,
        "cached s/epoch": head_epoch,
        "epoch ratio": full_epoch / head_epoch,
        "total ratio": sum(full_times) / cached_total,
        "full acc": full_accuracy,
        "cached acc": head_accuracy,
    }


def measure(args):
    return [measure_cut(cut, args) for cut in args.cuts]


def add_arguments(parser):
    parser.add_argument("--cuts", nargs="+", default=list(CUTS))
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument(
        "--epochs", type=int, default=3, help="per side; the first compiles"
    )


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
