"""What `frozen_bn.recalibrate` costs next to one `predict` pass.

Runs each Keras backend in its own subprocess. In each, a MobileNetV2
(random weights) goes over the same images with `model.predict` and with
`frozen_bn.recalibrate`, alternating, several times; the medians and their
ratios are printed. `predict` is timed cold (its compiled function reset
before each run, as on a first call, since `recalibrate` compiles its pass
on every call) and warm (compiled function reused).

Usage:

    python benchmarks/recalibrate_cost.py            # every backend
    python benchmarks/recalibrate_cost.py --backend jax
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def measure(args):
    import keras
    import numpy as np

    import frozen_bn

    shape = (args.size, args.size, 3)
    model = keras.applications.MobileNetV2(
        weights=None, input_shape=shape, classes=10
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.samples, *shape)).astype("float32")

    def timed(function):
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    def predict():
        model.predict(x, batch_size=args.batch_size, verbose=0)

    def predict_cold():
        model.predict_function = None
        predict()

    def recalibrate():
        frozen_bn.recalibrate(model, x, batch_size=args.batch_size, verbose=0)

    times = {"predict (cold)": [], "predict (warm)": [], "recalibrate": []}
    for _ in range(args.repeats):
        times["predict (cold)"].append(timed(predict_cold))
        times["predict (warm)"].append(timed(predict))
        times["recalibrate"].append(timed(recalibrate))
    medians = {name: statistics.median(t) for name, t in times.items()}
    recal = medians["recalibrate"]
    print(
        f"{keras.backend.backend():<10}  "
        + "  ".join(f"{name} {value:6.2f}s" for name, value in medians.items())
        + f"  ratio vs cold {recal / medians['predict (cold)']:.2f}x"
        + f"  vs warm {recal / medians['predict (warm)']:.2f}x"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.backend:
        measure(args)
        return
    print(
        f"MobileNetV2 {args.size}x{args.size}, {args.samples} images, "
        f"batch {args.batch_size}, median of {args.repeats}"
    )
    options = [
        f"--samples={args.samples}",
        f"--size={args.size}",
        f"--batch-size={args.batch_size}",
        f"--repeats={args.repeats}",
    ]
    for backend in BACKENDS:
        environment = {**os.environ, "KERAS_BACKEND": backend}
        subprocess.run(
            [sys.executable, __file__, f"--backend={backend}", *options],
            env=environment,
            check=True,
            stderr=subprocess.DEVNULL,
        )


if __name__ == "__main__":
    main()
