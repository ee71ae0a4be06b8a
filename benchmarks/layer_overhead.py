"""Training-step time of a ResNet50 with a frozen bottom: stock BN vs frozen_bn.

Both models live in one process and are timed in alternation, so they see
the same machine state. The ratio is frozen_bn's median step time over the
stock layer's (goal: <= 1.02).

Usage: python benchmarks/layer_overhead.py [--backends tensorflow jax torch]
"""

import numpy as np
from _harness import main, median_seconds

# The 2018 experiment fine-tunes ResNet50 from the layer after this one.
FROZEN_LAYERS = 140


def build_models(size):
    import keras

    import frozen_bn

    stock = keras.applications.ResNet50(
        weights=None, input_shape=(size, size, 3), classes=10
    )
    for layer in stock.layers[:FROZEN_LAYERS]:
        layer.trainable = False
    patched = frozen_bn.patch_model(stock)
    for model in (stock, patched):
        model.compile(
            optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
    return stock, patched


def measure(args):
    import keras

    stock, patched = build_models(args.size)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, args.size, args.size, 3)).astype("f4")
    y = rng.integers(0, 10, size=(args.batch,))
    steps = {}
    for name, model in (("stock", stock), ("frozen_bn", patched)):
        model.train_on_batch(x, y)  # compile the step
        steps[name] = lambda model=model: model.train_on_batch(x, y)
    times = {"stock": [], "frozen_bn": []}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].append(median_seconds(step, args.steps))
    stock_time = float(np.median(times["stock"]))
    ours_time = float(np.median(times["frozen_bn"]))
    return [
        {
            "backend": keras.backend.backend(),
            "stock ms/step": 1000 * stock_time,
            "frozen_bn ms/step": 1000 * ours_time,
            "ratio": ours_time / stock_time,
        }
    ]


def add_arguments(parser):
    parser.add_argument("--size", type=int, default=96, help="image side")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=7)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
