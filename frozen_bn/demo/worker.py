"""The demo's graph-mode subprocess: the tf_keras runs in TF1 graph mode.

Graph mode must be switched on before anything else of TensorFlow runs,
so the tf_keras setting runs in its own process, `python -m
frozen_bn.demo worker SPEC`, while the main process runs the Keras 3
settings. The subprocess prints its results as one line of JSON.
"""

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

from frozen_bn import _tf_logs
from frozen_bn.demo.models import load_weights
from frozen_bn.demo.protocol import GRAPH_MODE_SETTING, Protocol
from frozen_bn.demo.runs import run_setting


def graph_mode_available():
    """Whether tensorflow and tf_keras are installed, for the graph-mode run."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("tensorflow", "tf_keras")
    )


def start(seeds, weight_paths, protocol):
    """Starts the subprocess; `collect` gets its results.

    Args:
        seeds: The seeds to run.
        weight_paths: The cached pretrained weights of each seed, in order.
        protocol: The `Protocol`.

    Returns:
        The `subprocess.Popen` of the running subprocess.
    """
    spec = {
        "seeds": list(seeds),
        "weights": list(weight_paths),
        "protocol": dataclasses.asdict(protocol),
    }
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    _tf_logs.quiet(env)
    return subprocess.Popen(
        [sys.executable, "-m", "frozen_bn.demo", "worker", json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def collect(process):
    """Waits for the subprocess of `start`; returns its list of results.

    Raises:
        RuntimeError: The subprocess failed; the message ends with its
            stderr.
    """
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(
            "The tf_keras graph-mode run failed (exit code "
            f"{process.returncode}):\n{stderr[-3000:]}"
        )
    return json.loads(stdout.strip().splitlines()[-1])


def run(spec):
    """The subprocess's work: the graph-mode setting, stock first, then ours.

    The stock runs come first, so nothing of frozen_bn's tf_keras support
    is imported while they run.

    Args:
        spec: The dict `start` passes: `seeds`, `weights` (their paths)
            and `protocol` (the `Protocol`'s fields).

    Returns:
        The `run_one` results, a list.
    """
    import tensorflow as tf

    # Before tf_keras is imported, as a TF1 program does it.
    tf.compat.v1.disable_v2_behavior()
    import tf_keras

    weights = {
        seed: load_weights(path)
        for seed, path in zip(spec["seeds"], spec["weights"], strict=True)
    }
    runs = run_setting(
        tf_keras, GRAPH_MODE_SETTING, weights, Protocol(**spec["protocol"])
    )
    return [result for _, results in runs for result in results]
