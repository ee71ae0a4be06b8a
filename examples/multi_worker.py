"""`recalibrate` and `diagnose` with two worker processes, each on its shard.

Two cameras took the images of a new task: worker 0 reads the 288 images
of the first (bright), worker 1 the 500 of the second (dark, low contrast),
as two machines of a training job each read their own shard. A small conv
net pretrained elsewhere (random weights here, BN statistics at their
initial values) has its statistics recalibrated on the new data, then is
diagnosed, once with both workers and once in a single process over all
788 images.

The script starts its two workers itself, on 127.0.0.1 with free ports,
and stops them when they are done (or after five minutes):
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy`, set up by
  `TF_CONFIG`;
- JAX: `jax.distributed.initialize` and `keras.distribution.DataParallel`.

For each worker it prints the mean of the first BN layer's inputs on its
own shard (what it would write alone), the moving mean `recalibrate` wrote
(the same on both: the mean over the union), the sample count and loss
`diagnose` reports, and how many collectives frozen_bn issued; then how far
the workers' statistics are from the single process's. The shards split
into the same batches as the 788 images in one process (the last one of 20
images), so the two runs differ only in float64 round-off.

The workers' statistics should be bitwise equal, and within float32
round-off (a relative gap below 1e-5) of the single process's.

Run: python examples/multi_worker.py [--backend tensorflow|jax] [--quick]
(`--quick`: 96 and 160 images.)
"""

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

SHARDS = {
    "full": (288, 500),
    "quick": (96, 160),
}  # full: 9 batches of 32; 15 and one of 20
BATCH_SIZE = 32
SEED = 0


def shard(index, sizes):
    """The images of camera `index` and their labels (numpy)."""
    import numpy as np

    rng = np.random.default_rng(SEED + index)
    count = sizes[index]
    y = rng.integers(0, 2, count)
    x = rng.normal(0.0, 1.0, (count, 12, 12, 3))
    x[y == 1, 3:9, 3:9] += 1.5  # the class: a bright square in the middle
    brightness, contrast = ((0.7, 1.0), (0.2, 0.4))[index]
    return (brightness + contrast * x).astype("float32"), y


def build_model():
    import keras

    keras.utils.set_random_seed(SEED)  # the same weights in every process
    inputs = keras.Input((12, 12, 3))
    x = keras.layers.BatchNormalization(name="input_bn")(inputs)
    for filters in (8, 16):
        x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


def worker(index, backend, ports, sizes):
    """One worker: its engine, then recalibrate and diagnose its shard."""
    if backend == "jax":
        import jax

        jax.distributed.initialize(
            f"127.0.0.1:{ports[0]}", num_processes=2, process_id=index
        )
        import keras

        distribution = keras.distribution.DataParallel(devices=jax.devices())
        scope = distribution.scope
    else:
        import tensorflow as tf

        scope = tf.distribute.MultiWorkerMirroredStrategy().scope
    import keras
    import numpy as np

    import frozen_bn
    from frozen_bn import _workers

    numpy = keras.ops.convert_to_numpy

    x, y = shard(index, sizes)
    with scope():
        model = frozen_bn.patch_model(build_model())
    frozen_bn.recalibrate(model, x, batch_size=BATCH_SIZE, verbose=0)
    report = frozen_bn.diagnose(model, x, y, batch_size=BATCH_SIZE, verbose=0)
    bn = model.get_layer("input_bn")
    result = {
        "worker": index,
        "images": len(x),
        "shard mean": float(x.mean()),
        "moving mean": float(np.mean(numpy(bn.moving_mean))),
        "statistics": [
            numpy(w).ravel().tolist() for w in model.non_trainable_weights
        ],
        "diagnosed samples": report.samples,
        "loss": report.inference["loss"],
        "collectives": _workers.collectives_issued(),
    }
    print("RESULT " + json.dumps(result), flush=True)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start_workers(backend, quick, timeout=300):
    """Runs both workers; returns their results in worker order."""
    ports = free_ports(2)
    processes = []
    files = contextlib.ExitStack()
    logs = [
        [files.enter_context(tempfile.TemporaryFile("w+")) for _ in "oe"]  # noqa: SIM115
        for _ in range(2)
    ]
    try:
        for index in range(2):
            config = {
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": index},
            }
            env = {
                **os.environ,
                "KERAS_BACKEND": backend,
                "TF_CONFIG": json.dumps(config),
                "TF_CPP_MIN_LOG_LEVEL": "3",
            }
            command = [sys.executable, __file__, "--backend", backend]
            command += ["--worker", str(index), "--ports", *map(str, ports)]
            command += ["--quick"] if quick else []
            processes.append(
                # Files, not pipes: a worker blocked on a full pipe would
                # keep the other one waiting for it.
                subprocess.Popen(
                    command,
                    env=env,
                    stdout=logs[index][0],
                    stderr=logs[index][1],
                    text=True,
                )
            )
        deadline = time.monotonic() + timeout
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        outputs = []
        for stdout, stderr in logs:
            stdout.seek(0)
            stderr.seek(0)
            outputs.append((stdout.read(), stderr.read()))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        files.close()
    results = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        lines = [x for x in stdout.splitlines() if x.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            raise SystemExit(f"a worker failed:\n{stderr[-3000:]}")
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results


def single_process(sizes):
    """The same recalibration and diagnosis over all images, one process."""
    import keras
    import numpy as np

    import frozen_bn

    x, y = (
        np.concatenate(parts)
        for parts in zip(shard(0, sizes), shard(1, sizes), strict=True)
    )
    model = frozen_bn.patch_model(build_model())
    frozen_bn.recalibrate(model, x, batch_size=BATCH_SIZE, verbose=0)
    report = frozen_bn.diagnose(model, x, y, batch_size=BATCH_SIZE, verbose=0)
    statistics = [
        np.ravel(keras.ops.convert_to_numpy(w))
        for w in model.non_trainable_weights
    ]
    return x, statistics, report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=("tensorflow", "jax"), default="tensorflow"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ports", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer images")
    args = parser.parse_args()
    sizes = SHARDS["quick" if args.quick else "full"]
    if args.worker is not None:
        worker(args.worker, args.backend, args.ports, sizes)
        return
    print(f"Two workers on 127.0.0.1 ({args.backend}) ...", flush=True)
    start = time.perf_counter()
    results = start_workers(args.backend, args.quick)
    print(f"both done in {time.perf_counter() - start:.0f} s; one process ...")
    os.environ["KERAS_BACKEND"] = args.backend
    import numpy as np

    x, statistics, report = single_process(sizes)
    print(f"backend: {args.backend}, 2 workers, batches of {BATCH_SIZE}")
    header = ("worker", "images", "shard mean", "moving mean", "samples")
    print(
        "{:<8}{:>8}{:>12}{:>13}{:>9}{:>10}{:>13}".format(
            *header, "loss", "collectives"
        )
    )
    for r in results:
        print(
            f"{r['worker']:<8}{r['images']:>8}{r['shard mean']:>12.4f}"
            f"{r['moving mean']:>13.4f}{r['diagnosed samples']:>9}"
            f"{r['loss']:>10.6f}{r['collectives']:>13}"
        )
    gaps = [
        np.max(np.abs(np.asarray(a) - b) / np.abs(b))
        for r in results
        for a, b in zip(r["statistics"], statistics, strict=True)
    ]
    single = report.inference["loss"]
    print(
        f"single  {len(x):>8}{x.mean():>12.4f}"
        f"{np.mean(statistics[0]):>13.4f}{report.samples:>9}{single:>10.6f}"
        f"{0:>13}"
    )
    agree = all(r["statistics"] == results[0]["statistics"] for r in results)
    print(f"workers' statistics bitwise equal: {agree}")
    print(f"largest relative gap to the single process: {max(gaps):.2e}")


if __name__ == "__main__":
    main()
