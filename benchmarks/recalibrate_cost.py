"""What `frozen_bn.recalibrate` costs next to one `predict` pass.

A MobileNetV2 (random weights) goes over the same images with
`model.predict` and with `frozen_bn.recalibrate`, alternating, several
times; the medians and their ratios are printed (goal: <= 1.3x). `predict`
is timed cold (its compiled function reset before each run, as on a first
call, since `recalibrate` compiles its pass on every call) and warm
(compiled function reused).

Usage: python benchmarks/recalibrate_cost.py [--backends tensorflow jax torch]
"""

import statistics

from _harness import main, median_seconds


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

    def predict_warm():
        model.predict(x, batch_size=args.batch_size, verbose=0)

    def predict_cold():
        model.predict_function = None
        predict_warm()

    def recalibrate():
        frozen_bn.recalibrate(model, x, batch_size=args.batch_size, verbose=0)

    candidates = {
        "predict cold": predict_cold,
        "predict warm": predict_warm,
        "recalibrate": recalibrate,
    }
    times = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, function in candidates.items():
            times[name].append(median_seconds(function, 1))
    medians = {name: statistics.median(t) for name, t in times.items()}
    return [
        {
            "backend": keras.backend.backend(),
            **{f"{name} s": value for name, value in medians.items()},
            "vs cold": medians["recalibrate"] / medians["predict cold"],
            "vs warm": medians["recalibrate"] / medians["predict warm"],
        }
    ]


def add_arguments(parser):
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
