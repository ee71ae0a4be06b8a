"""What each `frozen_bn.callbacks` callback adds to an epoch of `fit()`.

A MobileNetV2 (random weights, 64x64, 10 classes) with its first 3 stages
frozen (`frozen_bn.freeze`, its other BN layers training) is fitted for a
few epochs with each callback, and a wrapper times the callback's own hooks
in every epoch. Ratios of medians over the epochs after the first (which
compiles), in one process; `predict` is timed right after the callback's
own `fit()`, on its model:

- `PreciseBN` (with validation data, so it measures before validation and
  at the end of the epoch) over one warm `predict` over its data (goal:
  <= 1.3);
- an epoch with `FrozenStatisticsGuard` over the same epoch without its
  hooks, checking at the end of each epoch (goal: <= 1.01) and after every
  batch;
- `ModeGapMonitor` over the two forward passes over its sample that it
  compares (goal: <= 1): a warm `predict`, and a warm `predict` of the model
  called in training mode (on torch that one costs about 1.15 times the
  first, for the moments and moving averages of the training BN layers);
  and over one warm `predict` (2 for the two passes on TensorFlow and JAX).

Usage: python benchmarks/callbacks_cost.py [--backends tensorflow jax torch]
"""

import collections
import statistics
import time

from _harness import main, median_seconds

HOOKS = (
    "on_train_begin",
    "on_epoch_begin",
    "on_test_begin",
    "on_test_end",
    "on_train_batch_end",
    "on_epoch_end",
)


def timed_callback(callback):
    """`callback` wrapped in a callback that times its hooks per epoch."""
    import keras

    class Timed(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch = 0
            self.hooks = collections.defaultdict(float)  # epoch: seconds
            self.epochs = collections.defaultdict(float)  # epoch: seconds

        def set_model(self, model):
            super().set_model(model)
            callback.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            callback.set_params(params)

    def hook(name):
        def call(self, *args, **kwargs):
            if name == "on_epoch_begin":
                self.epoch = args[0]
                self.epochs[self.epoch] -= time.perf_counter()
            start = time.perf_counter()
            getattr(callback, name)(*args, **kwargs)
            self.hooks[self.epoch] += time.perf_counter() - start
            if name == "on_epoch_end":
                self.epochs[self.epoch] += time.perf_counter()

        return call

    for name in HOOKS:
        setattr(Timed, name, hook(name))
    return Timed()


def steady(per_epoch):
    """The median over the epochs after the first."""
    return statistics.median(list(per_epoch.values())[1:])


def measure(args):
    import keras
    import numpy as np

    import frozen_bn
    from frozen_bn.callbacks import (
        FrozenStatisticsGuard,
        ModeGapMonitor,
        PreciseBN,
    )

    shape = (args.size, args.size, 3)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (args.samples, *shape)).astype("float32")
    y = rng.integers(0, 10, args.samples)
    sample_x, sample_y = x[: args.sample], y[: args.sample]

    def fit(callback):
        """The model fitted with `callback`, and the callback's timer."""
        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2(
            weights=None, input_shape=shape, classes=10
        )
        model = frozen_bn.freeze(model, stages=3, batch_norm="train")
        model.compile("sgd", "sparse_categorical_crossentropy")
        timed = timed_callback(callback)
        model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=(sample_x, sample_y),
            callbacks=[timed],
            verbose=0,
        )
        return model, timed

    def predict_seconds(model, data, training=False):
        """A warm `predict` of `model` (called in `training` mode) on `data`.

        Timed right after the callback's `fit()`, on its model: TensorFlow's
        `predict` slows down over the fits of one process.
        """
        if training:
            inputs = keras.Input(shape)
            model = keras.Model(inputs, model(inputs, training=True))

        def predict():
            model.predict(data, batch_size=args.batch_size, verbose=0)

        predict()  # Compiles.
        return median_seconds(predict, args.repeats)

    model, precise = fit(PreciseBN(x, batch_size=args.batch_size, verbose=0))
    predict_data = predict_seconds(model, x)
    _, guard = fit(FrozenStatisticsGuard())
    _, guard_each_batch = fit(FrozenStatisticsGuard(freq=1))
    model, gap = fit(
        ModeGapMonitor(sample_x, sample_y, batch_size=args.batch_size)
    )
    predict_sample = predict_seconds(model, sample_x)
    both_modes = predict_sample + predict_seconds(
        model, sample_x, training=True
    )

    def epoch_ratio(timed):
        epochs = [
            (timed.epochs[e], timed.hooks[e]) for e in sorted(timed.epochs)
        ][1:]
        return statistics.median(
            total / (total - hooks) for total, hooks in epochs
        )

    return [
        {
            "backend": keras.backend.backend(),
            "PreciseBN / predict": steady(precise.hooks) / predict_data,
            "PreciseBN first epoch s": precise.hooks[0],
            "guard epoch ratio": epoch_ratio(guard),
            "guard each batch ratio": epoch_ratio(guard_each_batch),
            "gap / predict": steady(gap.hooks) / predict_sample,
            "gap / both modes": steady(gap.hooks) / both_modes,
            "predict s": predict_data,
        }
    ]


def add_arguments(parser):
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--sample", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
