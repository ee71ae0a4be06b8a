"""Runs the whole test suite: once per Keras backend, plus separate processes.

Usage: python scripts/run_tests.py [--jobs N] [SUITE ...] [-- PYTEST_ARGS ...]

Each suite runs in its own process (a backend, TF1 graph mode, or a set of
devices is chosen once per process; the multi-worker suites start their
own worker processes), `--jobs` of them at a time (default:
one per CPU core); each prints its pytest output when it ends, and a table
of all suites closes the output. The exit code is 0 only if every
suite passed. The `keras-nightly-*` suites run the per-backend tests with
the next Keras release, from the virtual environment `make test` sets up in
`.venv-nightly`.
"""

import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tests that set up their whole process (TF1 graph mode, two devices): each
# directory runs only as its own suite, never in the per-backend runs
# (tests/conftest.py leaves them out unless they are named).
GRAPH_MODE_TESTS = "tests/graph_mode"
MULTI_DEVICE_TF_TESTS = "tests/multi_device_tf"
MULTI_DEVICE_JAX_TESTS = "tests/multi_device_jax"
# Each starts two worker processes on 127.0.0.1 (see tests/multi_worker.py).
MULTI_WORKER_TF_TESTS = "tests/multi_worker_tf"
MULTI_WORKER_JAX_TESTS = "tests/multi_worker_jax"
# The documentation's code and the examples' --quick runs, each in a
# subprocess of its own on TensorFlow: once is enough, not once per backend.
DOCS_TESTS = ("tests/test_docs.py", "tests/test_examples.py")
NIGHTLY_PYTHON = os.path.join(ROOT, ".venv-nightly", "bin", "python")
# In the order they start, longest first (measured), so that the last to
# end is a short one: the JAX suite, the critical path, starts at once, and
# the next Keras's JAX suite starts once the first has filled the shared
# compilation cache (see `run_all`).
SUITES = {
    "jax": ({"KERAS_BACKEND": "jax"}, ["tests"]),
    "tensorflow": ({"KERAS_BACKEND": "tensorflow"}, ["tests"]),
    "torch": ({"KERAS_BACKEND": "torch"}, ["tests"]),
    # The next Keras, without the tests marked slow (keras.applications
    # builds, whose behaviour does not depend on the release): they would
    # take the suite past its time budget.
    "keras-nightly-jax": (
        {"KERAS_BACKEND": "jax"},
        ["tests", "-m", "not slow"],
        NIGHTLY_PYTHON,
    ),
    "keras-nightly-tensorflow": (
        {"KERAS_BACKEND": "tensorflow"},
        ["tests", "-m", "not slow"],
        NIGHTLY_PYTHON,
    ),
    "docs": ({"KERAS_BACKEND": "tensorflow"}, list(DOCS_TESTS)),
    "multi-worker-jax": ({"KERAS_BACKEND": "jax"}, [MULTI_WORKER_JAX_TESTS]),
    "tf_keras-graph": ({"KERAS_BACKEND": "tensorflow"}, [GRAPH_MODE_TESTS]),
    "multi-device-tf": (
        {"KERAS_BACKEND": "tensorflow"},
        [MULTI_DEVICE_TF_TESTS],
    ),
    "multi-worker-tf": (
        {"KERAS_BACKEND": "tensorflow"},
        [MULTI_WORKER_TF_TESTS],
    ),
    "multi-device-jax": (
        {
            "KERAS_BACKEND": "jax",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        },
        [MULTI_DEVICE_JAX_TESTS],
    ),
}


def run_suite(name, pytest_args, environ):
    """Runs one suite with `environ`; returns its exit code, seconds and
    output."""
    env_update, paths, *python = SUITES[name]
    python = python[0] if python else sys.executable
    if not os.path.exists(python):
        return (
            2,
            0.0,
            f"error: suite {name} needs {python}; `make test` creates it\n",
        )
    env = {**environ, **env_update}
    command = [python, "-m", "pytest", *paths, *pytest_args]
    print(f"===== {name} started: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = f"\n===== {name}\n{done.stdout}"
    return done.returncode, time.perf_counter() - start, output


def run_all(names, pytest_args, jobs):
    """Runs the suites `names`, `jobs` at a time, in that order; returns
    {name: (exit code, seconds)}.

    On JAX most of building a keras.applications model is compiling its
    initializers, once per weight shape (about 0.1 s each), and a process
    keeps what it compiled to itself. The suites share a compilation cache
    on disk for the run, so that a JAX suite reuses what an earlier one
    compiled (a user's own JAX_COMPILATION_CACHE_DIR is kept).
    """
    results = {}
    with (
        tempfile.TemporaryDirectory(prefix="frozen_bn-jax-cache-") as cache,
        concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        environ = {
            "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        } | os.environ
        futures = {
            pool.submit(run_suite, name, pytest_args, environ): name
            for name in names
        }
        for future in concurrent.futures.as_completed(futures):
            code, seconds, output = future.result()
            print(output, flush=True)
            results[futures[future]] = (code, seconds)
    return results


def _jobs(argv):
    """Takes `--jobs N` out of `argv`; returns N (default: CPU cores)."""
    if "--jobs" not in argv[: argv.index("--") if "--" in argv else None]:
        return os.cpu_count() or 1
    index = argv.index("--jobs")
    value = argv[index + 1] if index + 1 < len(argv) else ""
    del argv[index : index + 2]
    if not value.isdigit() or int(value) < 1:
        print(
            f"error: --jobs takes a positive integer, got {value!r}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return int(value)


def main(argv):
    argv = list(argv)
    jobs = _jobs(argv)
    if "--" in argv:
        split = argv.index("--")
        names, pytest_args = argv[:split], argv[split + 1 :]
    else:
        names, pytest_args = argv, []
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        print(
            f"error: unknown suite(s) {unknown}; choose from {list(SUITES)}",
            file=sys.stderr,
        )
        return 2
    names = names or list(SUITES)
    results = run_all(names, pytest_args, jobs)
    print("\n===== summary")
    for name in names:
        code, seconds = results[name]
        status = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{name:<24} {status:<18} {seconds:7.1f}s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
