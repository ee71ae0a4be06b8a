"""`recalibrate` over N batches: one process vs two workers on the same data.

A MobileNetV2 (alpha 0.35, 32x32, random weights, 52 BN layers) is
recalibrated on N batches of images, in one process, then by two worker
processes on 127.0.0.1 that this script starts (TensorFlow:
`MultiWorkerMirroredStrategy`; JAX: `jax.distributed` with `DataParallel`),
each on its half of the batches. Printed: the median wall time of a
`recalibrate` call (for the workers: the slower one's, startup excluded)
and the collectives frozen_bn issued per call; on JAX also every
cross-process gather per call, JAX's own included (a `Variable.assign`
on devices of several processes first checks that the value is the same
on each). Both sides write the same statistics (checked).

Usage: python benchmarks/multi_worker_recalibrate.py --backends tensorflow jax
    [--batches N] [--batch-size B] [--repeats R]
"""

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from _harness import main

WORKER_PREFIX = "WORKER "


def build_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )


def images(args):
    import numpy as np

    rng = np.random.default_rng(0)
    count = args.batches * args.batch_size
    return rng.uniform(0, 255, (count, 32, 32, 3)).astype("float32")


def timed_recalibrations(model, x, args, counter=None):
    """Median seconds, frozen_bn collectives and all gathers per call."""
    import frozen_bn
    from frozen_bn import _workers

    times, issued, gathers = [], [], []
    for _ in range(args.repeats):
        before = _workers.collectives_issued()
        calls = counter["calls"] if counter else 0
        start = time.perf_counter()
        frozen_bn.recalibrate(model, x, batch_size=args.batch_size, verbose=0)
        times.append(time.perf_counter() - start)
        issued.append(_workers.collectives_issued() - before)
        gathers.append((counter["calls"] if counter else 0) - calls)
    return statistics.median(times), max(issued), max(gathers)


def statistics_of(model):
    import keras
    import numpy as np

    return np.concatenate(
        [
            np.ravel(keras.ops.convert_to_numpy(w))
            for w in model.non_trainable_weights
        ]
    )


def worker(args):
    """One of the two workers: recalibrates on its half of the batches."""
    index = args.worker
    counter = None
    if args.backend == "jax":
        import jax
        from jax.experimental import multihost_utils

        jax.distributed.initialize(
            f"127.0.0.1:{args.ports[0]}", num_processes=2, process_id=index
        )
        import keras

        counter = {"calls": 0}
        original = multihost_utils.process_allgather

        def counted(*a, **k):
            counter["calls"] += 1
            return original(*a, **k)

        multihost_utils.process_allgather = counted
        scope = keras.distribution.DataParallel(devices=jax.devices()).scope
    else:
        import tensorflow as tf

        scope = tf.distribute.MultiWorkerMirroredStrategy().scope
    x = images(args)
    half = (args.batches // 2) * args.batch_size
    x = x[:half] if index == 0 else x[half:]
    with scope():
        model = build_model()
    seconds, issued, gathers = timed_recalibrations(model, x, args, counter)
    print(
        WORKER_PREFIX
        + json.dumps(
            {
                "seconds": seconds,
                "collectives": issued,
                "gathers": gathers,
                "statistics": statistics_of(model).tolist(),
            }
        ),
        flush=True,
    )


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(args, timeout=600):
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
            env = {**os.environ, "TF_CONFIG": json.dumps(config)}
            command = [sys.executable, os.path.abspath(sys.argv[0])]
            command += ["--backend", args.backend, "--worker", str(index)]
            command += ["--ports", *map(str, ports)]
            command += ["--batches", str(args.batches)]
            command += ["--batch-size", str(args.batch_size)]
            command += ["--repeats", str(args.repeats)]
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
        lines = [x for x in stdout.splitlines() if x.startswith(WORKER_PREFIX)]
        if process.returncode != 0 or not lines:
            raise SystemExit(f"a worker failed:\n{stderr[-3000:]}")
        results.append(json.loads(lines[-1][len(WORKER_PREFIX) :]))
    return results


def measure(args):
    if args.worker is not None:
        worker(args)
        return []
    if args.backend not in ("tensorflow", "jax"):
        return []  # torch: no multi-worker engine in Keras
    import numpy as np

    model = build_model()
    seconds, issued, _ = timed_recalibrations(model, images(args), args)
    reference = statistics_of(model)
    workers = run_workers(args)
    for result in workers:
        np.testing.assert_allclose(
            result["statistics"], reference, rtol=1e-5, atol=1e-6
        )
    row = {
        "backend": args.backend,
        "batches": args.batches,
        "1 process s": seconds,
        "2 workers s": max(result["seconds"] for result in workers),
        "collectives, 1 process": issued,
        "collectives, 2 workers": max(r["collectives"] for r in workers),
    }
    if args.backend == "jax":
        row["all gathers, 2 workers"] = max(r["gathers"] for r in workers)
    return [row]


def add_arguments(parser):
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", type=int, help="internal")
    parser.add_argument("--ports", type=int, nargs=2, help="internal")


if __name__ == "__main__":
    main(measure, __doc__.splitlines()[0], add_arguments)
