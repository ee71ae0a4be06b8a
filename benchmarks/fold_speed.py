"""Predict throughput of models with and without their BN layers folded.

For ResNet50 and MobileNetV2 (random weights, 160x160 inputs, batch 32),
times `predict()` of the original model and of
`frozen_bn.fold_batch_norms(model)`, alternating the two in one process,
and prints the median images per second of each and their ratio (goal:
>= 1.8x on TensorFlow for ResNet50, no slowdown on JAX and torch).

Usage: python benchmarks/fold_speed.py [--backends tensorflow jax torch]
"""

import statistics
import time

from _harness import main


def images_per_second(model, x, batch_size):
    start = time.perf_counter()
    model.predict(x, batch_size=batch_size, verbose=0)
    return len(x) / (time.perf_counter() - start)


def measure_model(name, args):
    import keras
    import numpy as np

    import frozen_bn

    size = args.image_size
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3)
    )
    folded, report = frozen_bn.fold_batch_norms(model)
    x = np.random.default_rng(0).random(
        (args.batch_size * args.batches, size, size, 3), dtype="float32"
    )
    rates = {"original": [], "folded": []}
    for candidate in (model, folded):  # Warm up: tracing and compiling.
        candidate.predict(x[: args.batch_size], verbose=0)
    for _ in range(args.repeats):
        rates["original"].append(images_per_second(model, x, args.batch_size))
        rates["folded"].append(images_per_second(folded, x, args.batch_size))
    original = statistics.median(rates["original"])
    fast = statistics.median(rates["folded"])
    return {
        "backend": keras.backend.backend(),
        "model": name,
        "BNs folded": len(report.folded),
        "original img/s": original,
        "folded img/s": fast,
        "speedup": fast / original,
    }


def measure(args):
    return [measure_model(name, args) for name in args.models]


def add_arguments(parser):
    parser.add_argument(
        "--models", nargs="+", default=["ResNet50", "MobileNetV2"]
    )
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--batches", type=int, default=2, help="batches per timed predict()"
    )
    parser.add_argument("--repeats", type=int, default=5)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
