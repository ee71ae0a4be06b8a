"""Two worker processes on this machine, and what both test suites check.

`run_workers` starts `python -m <worker module> INDEX OUT_DIR` twice, on
loopback addresses with free ports, waits for both within a time limit and
kills whatever is left in a `finally`. Each worker runs the checks below on
its own shard of the data and writes what it saw to `OUT_DIR`
(`worker{INDEX}.npz`, `worker{INDEX}.json`); the pytest process compares the
two workers with each other and with a single-process run over the union of
their data, which it computes itself.

Shards are uneven on purpose: for `recalibrate`, 20 and 30 images in
batches of 8 (last batches of 4 and 6); for `diagnose`, 16 and 21 images,
so that joined in worker order they make the same batches as the workers.
"""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np

from tests.helpers import images
from tests.multi_device_models import labels, statistics_variables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 2
BATCH_SIZE = 8
RECALIBRATE_SIZES = (20, 30)
DIAGNOSE_SIZES = (16, 21)
FIT_SIZE = 16  # per worker: fit() steps in lockstep, so shards are even
# Batches in the "many batches" recalibration: the collectives must not grow.
MANY_BATCHES = 24
# What `ModeGapMonitor` writes into the epoch's logs.
MODE_GAP_LOGS = (
    "mode_gap",
    "training_mode_accuracy",
    "inference_mode_accuracy",
)


def free_ports(count):
    """`count` free TCP ports on 127.0.0.1, chosen by the system."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_workers(module, out_dir, backend, env_for, timeout=300):
    """Runs `module` as two worker processes; returns their logs.

    Args:
        module: The worker's module, run as `python -m module INDEX OUT_DIR`.
        out_dir: Where the workers write their results.
        backend: `KERAS_BACKEND` of the workers.
        env_for: A function from `(index, ports)` to the worker's extra
            environment (its engine's cluster description).
        timeout: Seconds both workers have, together.

    Raises:
        AssertionError: if a worker fails or runs out of time (its log is
            in the message).
    """
    ports = free_ports(WORKERS)
    processes, logs = [], []
    try:
        for index in range(WORKERS):
            path = os.path.join(out_dir, f"worker{index}.log")
            log = open(path, "w+")  # noqa: SIM115 (closed below)
            logs.append(log)
            env = {
                **os.environ,
                "KERAS_BACKEND": backend,
                "PYTHONPATH": ROOT,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                **env_for(index, ports),
            }
            command = [sys.executable, "-m", module, str(index), out_dir]
            processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=log
                )
            )
        deadline = time.monotonic() + timeout
        for process in processes:
            remaining = max(deadline - time.monotonic(), 0.1)
            process.wait(timeout=remaining)
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    for index, process in enumerate(processes):
        assert process.returncode == 0, (
            f"worker {index} exited with {process.returncode}:\n"
            + texts[index][-6000:]
        )
    return texts


def load_results(out_dir):
    """Each worker's arrays (a dict of numpy arrays) and JSON record."""
    results = []
    for index in range(WORKERS):
        arrays = dict(np.load(os.path.join(out_dir, f"worker{index}.npz")))
        with open(os.path.join(out_dir, f"worker{index}.json")) as file:
            record = json.load(file)
        results.append((arrays, record))
    return results


def recalibrate_shard(index):
    start = sum(RECALIBRATE_SIZES[:index])
    x = images(count=sum(RECALIBRATE_SIZES), seed=3)
    return x[start : start + RECALIBRATE_SIZES[index]]


def diagnose_shard(index):
    start = sum(DIAGNOSE_SIZES[:index])
    count = sum(DIAGNOSE_SIZES)
    x, y = images(count=count, seed=4), labels(count=count, seed=4)
    window = slice(start, start + DIAGNOSE_SIZES[index])
    return x[window], y[window]


def fit_shard(index):
    return (
        images(count=FIT_SIZE, seed=10 + index),
        labels(count=FIT_SIZE, seed=10 + index),
    )


def batches_of(x):
    return [x[i : i + BATCH_SIZE] for i in range(0, len(x), BATCH_SIZE)]


def values(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def save(out_dir, index, arrays, record):
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **arrays)
    with open(os.path.join(out_dir, f"worker{index}.json"), "w") as file:
        json.dump(record, file)


def named(prefix, arrays):
    """`arrays` as `{"prefix/0": ..., "prefix/1": ...}`, for `save`."""
    return {f"{prefix}/{i}": array for i, array in enumerate(arrays)}


def statistics_arrays(prefix, model):
    """The moving statistics of `model` as named arrays for `save`."""
    return named(prefix, values(statistics_variables(model)))


def flat_statistics(model):
    """The moving statistics of `model` in one flat array."""
    return np.concatenate(
        [np.ravel(v) for v in values(statistics_variables(model))]
    )


RAW_SIZES = (13, 22)


def raw_shard(index):
    """Raw 4-feature inputs; the second worker's are shifted and scaled."""
    rng = np.random.default_rng(20 + index)
    x = rng.standard_normal((RAW_SIZES[index], 4))
    return (x * (1 + 2 * index) + 3 * index).astype("float32")


def check_recalibrate(scope, index, arrays, record):
    """`recalibrate` on this worker's shard, a few batches and many."""
    import frozen_bn
    from frozen_bn import _workers
    from tests.multi_device_models import bn_first_model, transfer_model

    keras.utils.set_random_seed(0)  # the same weights on every worker
    with scope():
        model, _ = transfer_model()
    arrays.update(named("weights", values(model.weights)))
    x = recalibrate_shard(index)
    issued = _workers.collectives_issued()
    frozen_bn.recalibrate(model, x, batch_size=BATCH_SIZE, verbose=0)
    record["recalibrate_collectives"] = _workers.collectives_issued() - issued
    arrays.update(statistics_arrays("recalibrated", model))
    # Many more batches (a different number on each worker): still one.
    many = np.concatenate([x] * (MANY_BATCHES * BATCH_SIZE // len(x) + 1))
    issued = _workers.collectives_issued()
    frozen_bn.recalibrate(model, many, batch_size=BATCH_SIZE, verbose=0)
    record["many_batches"] = -(-len(many) // BATCH_SIZE)
    record["many_collectives"] = _workers.collectives_issued() - issued
    with scope():
        model, _ = bn_first_model(momentum=0.9)
    frozen_bn.recalibrate(model, raw_shard(index), batch_size=4, verbose=0)
    arrays.update(statistics_arrays("raw", model))


def check_diagnose(scope, index, record):
    import frozen_bn
    from frozen_bn import _workers
    from tests.multi_device_models import transfer_model

    keras.utils.set_random_seed(0)
    with scope():
        model, _ = transfer_model()
        before = values(model.weights)
    x, y = diagnose_shard(index)
    issued = _workers.collectives_issued()
    report = frozen_bn.diagnose(model, x, y, batch_size=BATCH_SIZE, verbose=0)
    record["diagnose_collectives"] = _workers.collectives_issued() - issued
    record["diagnose"] = report.to_dict()
    record["diagnose_wrote_nothing"] = all(
        np.array_equal(a, b)
        for a, b in zip(before, values(model.weights), strict=True)
    )


def union_batches(shard):
    """The workers' batches, worker by worker: what one process runs."""
    return [batch for i in range(WORKERS) for batch in batches_of(shard(i))]


def reference_model(arrays, prefix):
    """`transfer_model()` with the weights a worker saved under `prefix`."""
    from tests.multi_device_models import transfer_model

    model, _ = transfer_model()
    model.set_weights(
        [arrays[f"{prefix}/{i}"] for i in range(len(model.weights))]
    )
    return model


def recalibrate_over_union(model):
    """`recalibrate` in this one process over every worker's batches."""
    import frozen_bn

    batches = iter(union_batches(recalibrate_shard))
    frozen_bn.recalibrate(model, batches, verbose=0)


def diagnose_over_union(model):
    """`diagnose` in this one process over every worker's samples."""
    import frozen_bn

    shards = [diagnose_shard(i) for i in range(WORKERS)]
    x = np.concatenate([s[0] for s in shards])
    y = np.concatenate([s[1] for s in shards])
    return frozen_bn.diagnose(model, x, y, batch_size=BATCH_SIZE, verbose=0)


def assert_recalibrated_union(results):
    """Both workers wrote the statistics a single process computes over
    the union of their data, batch for batch."""
    (first, _), (second, _) = results
    for key in first:
        if key.startswith(("recalibrated/", "raw/")):
            np.testing.assert_array_equal(first[key], second[key], key)
    reference = reference_model(first, "weights")
    recalibrate_over_union(reference)
    expected = values(statistics_variables(reference))
    for i, value in enumerate(expected):
        np.testing.assert_allclose(first[f"recalibrated/{i}"], value, rtol=1e-6)
    # The first BN sees the raw data: the numpy formula over the union.
    raw = np.concatenate([raw_shard(i) for i in range(WORKERS)], dtype="f8")
    np.testing.assert_allclose(first["raw/0"], raw.mean(0), rtol=1e-6)
    np.testing.assert_allclose(first["raw/1"], raw.var(0), rtol=1e-6)
    # And not the statistics of either shard alone.
    assert not np.allclose(first["raw/0"], raw_shard(0).mean(0), rtol=1e-2)


def assert_precise_bn_wrote_the_union(results):
    """After `fit()` with `PreciseBN` on each worker's shard, both workers
    hold the statistics one process measures over the union for the final
    weights."""
    (first, _), (second, _) = results
    for key in first:
        if key.startswith(("precise_weights/", "precise/")):
            np.testing.assert_array_equal(first[key], second[key], key)
    reference = reference_model(first, "precise_weights")
    recalibrate_over_union(reference)
    expected = values(statistics_variables(reference))
    for i, value in enumerate(expected):
        np.testing.assert_allclose(first[f"precise/{i}"], value, rtol=1e-6)


def assert_mode_gap_logged_over_the_union(results):
    """`ModeGapMonitor` after `PreciseBN` logged, on both workers, what
    `diagnose` reports over the union for the model `fit()` returned."""
    (arrays, first), (_, second) = results
    assert first["mode_gap_logs"] == second["mode_gap_logs"]
    report = diagnose_over_union(reference_model(arrays, "precise_weights"))
    expected = (
        report.output_gap,
        report.training["accuracy"],
        report.inference["accuracy"],
    )
    got = [first["mode_gap_logs"][key] for key in MODE_GAP_LOGS]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def assert_collectives_constant(results):
    for _, record in results:
        assert record["recalibrate_collectives"] == 1
        assert record["many_batches"] >= MANY_BATCHES
        assert record["many_collectives"] == 1


def assert_diagnosed_union(results):
    (arrays, first), (_, second) = results
    assert first["diagnose"] == second["diagnose"]
    assert first["diagnose_wrote_nothing"] and second["diagnose_wrote_nothing"]
    reference = reference_model(arrays, "weights")
    expected = diagnose_over_union(reference).to_dict()
    got = first["diagnose"]
    assert got["samples"] == expected["samples"] == sum(DIAGNOSE_SIZES)
    assert (got["task"], got["flagged"], got["chance"]) == (
        expected["task"],
        expected["flagged"],
        expected["chance"],
    )
    np.testing.assert_allclose(got["output_gap"], expected["output_gap"], 1e-5)
    for mode in ("inference", "training"):
        assert got[mode].keys() == expected[mode].keys()
        for key, value in got[mode].items():
            np.testing.assert_allclose(value, expected[mode][key], 1e-5, 1e-7)
    for layer, want in zip(got["layers"], expected["layers"], strict=True):
        assert layer["name"] == want["name"]
        np.testing.assert_allclose(
            [layer["mean_shift"], layer["variance_ratio"]],
            [want["mean_shift"], want["variance_ratio"]],
            rtol=1e-5,
        )
