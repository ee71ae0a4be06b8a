"""Exported artifacts: latency and size folded vs not, and export's cost.

For MobileNetV2 (random weights, 96x96 inputs; `--models` adds others,
e.g. ResNet50, which takes many minutes to convert here), on every
backend and for each format the backend exports that a serving runtime runs
here (ONNX in onnxruntime, LiteRT in `ai_edge_litert`'s
interpreter):

- latency: the median time of one batch of `--batch-size` images through
  the artifact of the model and of `frozen_bn.fold_batch_norms(model)`,
  taking turns in one process; reported with their ratio;
- size: the artifact sizes (MB) and their ratio;
- export: the median time of `frozen_bn.export` and of Keras's own
  `model.export` of the same model, taking turns, and their ratio.

Converters fold Conv -> BN themselves (LiteRT has no BN op, onnxruntime
fuses Conv + BatchNormalization), so the gain of folding is what they do
not fold: a BN after an addition or an activation stays an explicit
multiply and add.

Usage: python benchmarks/export_cost.py [--backends tensorflow jax torch]
"""

import os
import tempfile

from _harness import main, median_seconds

SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def _size_mb(path):
    return os.path.getsize(path) / 1e6


def _session(path, format):
    """A function that runs the artifact at `path` on one batch."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(
            path, providers=["CPUExecutionProvider"]
        )
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    index = interpreter.get_input_details()[0]["index"]

    def run(x):
        interpreter.resize_tensor_input(index, x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return run


def measure_model(name, format, args, directory):
    import keras
    import numpy as np

    import frozen_bn

    size = args.image_size
    model = getattr(keras.applications, name)(
        weights=None, input_shape=(size, size, 3)
    )
    folded, report = frozen_bn.fold_batch_norms(model)
    x = np.random.default_rng(0).random(
        (args.batch_size, size, size, 3), dtype="float32"
    )
    model.predict(x, verbose=0)  # Keras's ONNX exporter wants a called model.
    paths = {
        kind: os.path.join(directory, f"{name}_{kind}{SUFFIX[format]}")
        for kind in ("original", "folded", "stock")
    }

    def ours():
        frozen_bn.export(model, paths["original"], format)

    def keras_own():
        model.export(paths["stock"], format=format, verbose=False)

    ours_s = median_seconds(ours, args.export_repeats)
    keras_s = median_seconds(keras_own, args.export_repeats)
    frozen_bn.export(folded, paths["folded"], format, check_data=x)
    runs = {
        kind: _session(paths[kind], format) for kind in ("original", "folded")
    }
    times = {kind: [] for kind in runs}
    for run in runs.values():  # Warm-up.
        run(x)
    for _ in range(args.repeats):  # Taking turns.
        for kind, run in runs.items():
            times[kind].append(median_seconds(lambda run=run: run(x), 1))
    latency = {kind: float(np.median(t)) * 1e3 for kind, t in times.items()}
    sizes = {kind: _size_mb(paths[kind]) for kind in runs}
    return {
        "backend": keras.backend.backend(),
        "model": name,
        "format": format,
        "BN folded/kept": f"{len(report.folded)}/{len(report.kept)}",
        "ms original": latency["original"],
        "ms folded": latency["folded"],
        "folded speed-up": latency["original"] / latency["folded"],
        "MB original": sizes["original"],
        "MB folded": sizes["folded"],
        "export s": ours_s,
        "model.export s": keras_s,
        "export overhead": ours_s / keras_s,
    }


def measure(args):
    import keras

    from frozen_bn.exporting import FORMATS

    formats = [f for f in FORMATS[keras.backend.backend()] if f in SUFFIX]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name in args.models:
            for format in formats:
                rows.append(measure_model(name, format, args, directory))
    return rows


def add_arguments(parser):
    parser.add_argument("--models", nargs="+", default=["MobileNetV2"])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--export-repeats", type=int, default=3)


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
