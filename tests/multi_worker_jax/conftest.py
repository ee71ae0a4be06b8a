"""Starts the two JAX worker processes once for the whole directory.

`scripts/run_tests.py` runs this directory as its own suite
("multi-worker-jax", `KERAS_BACKEND=jax`) and leaves it out of the
per-backend runs. The pytest process itself stays a single-process run: it
computes the references the workers are compared with.
"""

import keras
import pytest

from tests import multi_worker

if keras.backend.backend() != "jax":
    # Run as its own suite: `python scripts/run_tests.py multi-worker-jax`.
    collect_ignore_glob = ["test_*.py"]


def _coordinator(index, ports):
    return {"FROZEN_BN_COORDINATOR": f"127.0.0.1:{ports[0]}"}


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    """Each worker's `(arrays, record)`, from one run of both workers."""
    out_dir = str(tmp_path_factory.mktemp("workers"))
    multi_worker.run_workers(
        "tests.multi_worker_jax.worker", out_dir, "jax", _coordinator
    )
    return multi_worker.load_results(out_dir)
