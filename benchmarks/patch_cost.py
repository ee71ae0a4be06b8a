"""Cost of `patch_model` on ResNet50 against `clone_model` + `set_weights`.

Copy mode does what the reference does plus the class swap, so the goal is a
ratio <= 1.2; in-place mode copies nothing and should cost far less. Peak
memory is the growth of the resident set while the call runs.

Usage: python benchmarks/patch_cost.py [--backends tensorflow jax torch]
"""

import statistics
import time

from _harness import main, peak_memory_growth

MIB = 2**20


def measure(args):
    import keras

    import frozen_bn

    model = keras.applications.ResNet50(
        weights=None, input_shape=(args.size, args.size, 3)
    )

    def reference():
        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        return clone

    def copy_mode():
        return frozen_bn.patch_model(model)

    def inplace_mode():
        return frozen_bn.patch_model(model, inplace=True)

    candidates = {
        "clone+set_weights": reference,
        "patch_model copy": copy_mode,
        "patch_model inplace": inplace_mode,
    }
    times = {name: [] for name in candidates}
    memory = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, function in candidates.items():
            start = time.perf_counter()
            _, growth = peak_memory_growth(function)
            times[name].append(time.perf_counter() - start)
            memory[name].append(growth)
        frozen_bn.unpatch_model(model, inplace=True)  # untimed reset
    base = statistics.median(times["clone+set_weights"])
    return [
        {
            "backend": keras.backend.backend(),
            "method": name,
            "seconds": statistics.median(times[name]),
            "ratio": statistics.median(times[name]) / base,
            "peak MiB": statistics.median(memory[name]) / MIB,
        }
        for name in candidates
    ]


def add_arguments(parser):
    parser.add_argument("--size", type=int, default=96, help="image side")
    parser.add_argument("--repeats", type=int, default=5)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
