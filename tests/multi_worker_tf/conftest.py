"""Starts the two TensorFlow worker processes once for the whole directory.

`scripts/run_tests.py` runs this directory as its own suite
("multi-worker-tf", `KERAS_BACKEND=tensorflow`) and leaves it out of the
per-backend runs. The pytest process itself stays a single-process run: it
computes the references the workers are compared with.
"""

import json

import keras
import pytest

from tests import multi_worker

if keras.backend.backend() != "tensorflow":
    # Run as its own suite: `python scripts/run_tests.py multi-worker-tf`.
    collect_ignore_glob = ["test_*.py"]


def _tf_config(index, ports):
    """`TF_CONFIG` for worker `index` of a cluster on 127.0.0.1."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    return {"TF_CONFIG": json.dumps(config)}


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    """Each worker's `(arrays, record)`, from one run of both workers."""
    out_dir = str(tmp_path_factory.mktemp("workers"))
    multi_worker.run_workers(
        "tests.multi_worker_tf.worker", out_dir, "tensorflow", _tf_config
    )
    return multi_worker.load_results(out_dir)
