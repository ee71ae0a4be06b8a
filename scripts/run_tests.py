"""Runs the whole test suite once per Keras backend, each in its own process.

Usage: python scripts/run_tests.py [BACKEND ...] [-- PYTEST_ARGS ...]

Every run prints its own pytest summary; a table of all runs closes the
output. The exit code is 0 only if every run passed.
"""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
# pytest's exit code when it collected no test at all.
NO_TESTS_COLLECTED = 5


def run_suite(backend, pytest_args):
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", "pytest", *pytest_args]
    print(f"\n===== KERAS_BACKEND={backend}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    return code, time.perf_counter() - start


def main(argv):
    if "--" in argv:
        split = argv.index("--")
        names, pytest_args = argv[:split], argv[split + 1 :]
    else:
        names, pytest_args = argv, []
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        print(
            f"error: unknown backend(s) {unknown}; choose from {BACKENDS}",
            file=sys.stderr,
        )
        return 2
    results = [
        (name, *run_suite(name, pytest_args)) for name in names or BACKENDS
    ]
    print("\n===== summary")
    for name, code, seconds in results:
        status = "passed" if code == 0 else f"FAILED (exit {code})"
        print(f"{name:<12} {status:<18} {seconds:7.1f}s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
