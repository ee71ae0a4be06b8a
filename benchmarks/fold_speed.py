"""Predict throughput of models with and without their BN layers folded.

For ResNet50 and MobileNetV2 (random weights, 160x160 inputs, batch 32),
times `predict()` of the original model and of
`frozen_bn.fold_batch_norms(model)`, alternating the two in one process,
and prints the median images per second of each and their ratio. Every
backend runs in its own subprocess.

Usage:
    python benchmarks/fold_speed.py [--backend tensorflow|jax|torch]
        [--models ResNet50 MobileNetV2] [--image-size 160]
        [--batch-size 32] [--batches 2] [--repeats 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ["tensorflow", "jax", "torch"]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument(
        "--models", nargs="+", default=["ResNet50", "MobileNetV2"]
    )
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--batches", type=int, default=2, help="batches per timed predict()"
    )
    parser.add_argument("--repeats", type=int, default=5)
    return parser.parse_args(argv)


def images_per_second(model, x, batch_size):
    start = time.perf_counter()
    model.predict(x, batch_size=batch_size, verbose=0)
    return len(x) / (time.perf_counter() - start)


def measure(name, args):
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
    return (
        f"{keras.backend.backend():<11} {name:<12} {len(report.folded):>6} "
        f"{original:>12.1f} {fast:>12.1f} {fast / original:>7.2f}x"
    )


HEADER = (
    f"{'backend':<11} {'model':<12} {'folded':>6} "
    f"{'original/s':>12} {'folded/s':>12} {'speedup':>8}"
)


def run_backend(args):
    for name in args.models:
        print(measure(name, args), flush=True)


def run_all(argv):
    print(HEADER, flush=True)
    failed = False
    for backend in BACKENDS:
        env = {**os.environ, "KERAS_BACKEND": backend}
        command = [sys.executable, __file__, "--backend", backend, *argv]
        result = subprocess.run(
            command, env=env, capture_output=True, text=True
        )
        if result.returncode:
            failed = True
            print(f"{backend}: failed\n{result.stderr[-2000:]}", flush=True)
        else:
            print(result.stdout, end="", flush=True)
    return 1 if failed else 0


def main(argv):
    args = parse_args(argv)
    if args.backend is None:
        return run_all(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # Before Keras is imported.
    run_backend(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
