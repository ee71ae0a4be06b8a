"""Predict speed of models with and without their BN layers folded.

For ResNet50 and MobileNetV2 (random weights, 160x160 inputs, batch 32),
times `predict_on_batch()` of the original model, of
`frozen_bn.fold_batch_norms(model)` and of a copy with its BN layers simply
deleted (which predicts wrongly, but bounds what folding can gain: the
folded model runs the same operations, plus a bias where the layer before a
BN had none), taking turns in one process. Two speeds are reported, each as
a ratio to the original's median time:

- steady: `--batches` batches with the compiled function reused
  (throughput);
- first: the same batches right after the compiled function is reset, as
  after loading a model to serve it: compiling is included.

`predict_on_batch` is timed rather than `predict()` because on TensorFlow the
data loop of `predict()` sometimes takes twice as long per batch on this
2-core machine, whatever the model, which swamps the difference measured.

Goal: folded >= 1.8x on TensorFlow for ResNet50, no slowdown on JAX and
torch.

Usage: python benchmarks/fold_speed.py [--backends tensorflow jax torch]
"""

import statistics
import time

from _harness import main


def predict_seconds(model, batches, first):
    if first:
        model.predict_function = None
    start = time.perf_counter()
    for batch in batches:
        model.predict_on_batch(batch)
    return time.perf_counter() - start


def without_batch_norms(model):
    """A copy of `model` whose BN layers are deleted (identity layers)."""
    import keras

    class Deleted(keras.layers.Layer):
        def call(self, inputs, mask=None):
            return inputs

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return Deleted(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=clone)


def measure_model(name, args):
    import keras
    import numpy as np

    import frozen_bn

    size = args.image_size
    original = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3)
    )
    folded, report = frozen_bn.fold_batch_norms(original)
    models = {
        "original": original,
        "folded": folded,
        "BN deleted": without_batch_norms(original),
    }
    rng = np.random.default_rng(0)
    batches = [
        rng.random((args.batch_size, size, size, 3), dtype="float32")
        for _ in range(args.batches)
    ]
    for model in models.values():  # Compiled once before the steady runs.
        model.predict_on_batch(batches[0])
    row = {
        "backend": keras.backend.backend(),
        "model": name,
        "BNs folded": len(report.folded),
    }
    for first in (False, True):
        times = {key: [] for key in models}
        for _ in range(args.repeats):
            for key, model in models.items():
                times[key].append(predict_seconds(model, batches, first))
        medians = {key: statistics.median(t) for key, t in times.items()}
        kind = "first" if first else "steady"
        if not first:
            images = args.batch_size * args.batches
            row["original img/s"] = images / medians["original"]
        for key in ("folded", "BN deleted"):
            row[f"{kind} {key}"] = medians["original"] / medians[key]
    return row


def measure(args):
    return [measure_model(name, args) for name in args.models]


def add_arguments(parser):
    parser.add_argument(
        "--models", nargs="+", default=["ResNet50", "MobileNetV2"]
    )
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--batches", type=int, default=2, help="batches per timing"
    )
    parser.add_argument("--repeats", type=int, default=5)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
