"""Runs every example's `--quick` mode and checks what it says it shows.

Each example states in its docstring the result a run should print; these
tests run it as a user would (a subprocess, TensorFlow backend) and read
that result from its output.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 600


def run_example(name, tmp_path):
    """Runs `examples/<name>.py --quick`; returns what it printed."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py"), "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def numbers_after(label, output):
    """The numbers on the line that starts with `label`."""
    line = re.search(rf"^{re.escape(label)}\b(.*)$", output, re.M)
    assert line is not None, f"no line starting with {label!r}:\n{output}"
    return [float(n) for n in re.findall(r"\d+\.\d+", line.group(1))]


@pytest.mark.slow
def test_quickstart_patched_statistics_stay_and_modes_agree(tmp_path):
    output = run_example("quickstart", tmp_path)
    drift, gap = numbers_after("frozen_bn.patch_model", output)
    assert drift == 0.0 and gap == 0.0, output
    stock_drift, _ = numbers_after("stock keras", output)
    assert stock_drift > 0.01, output  # Keras 3.15: fit() moves them


@pytest.mark.slow
def test_cached_finetune_learns_the_new_task(tmp_path):
    output = run_example("cached_finetune", tmp_path)
    accuracy = re.search(r"test accuracy (\d\.\d+) on the raw images", output)
    assert accuracy is not None, output
    assert float(accuracy.group(1)) > 0.8, output  # --quick; 0.9 in full
    assert "same predictions: True" in output


@pytest.mark.slow
def test_freeze_recipe_keeps_statistics_and_frozen_weights(tmp_path):
    output = run_example("freeze_recipe", tmp_path)
    assert re.search(r"BN layers unchanged: True$", output, re.M), output
    assert "frozen weights unchanged: True" in output, output
    assert "trained weights changed: True" in output, output


@pytest.mark.slow
def test_distributed_finetune_replicas_agree_and_modes_match(tmp_path):
    output = run_example("distributed_finetune", tmp_path)
    inference, training, drift = numbers_after("frozen_bn", output)
    assert inference == training and drift == 0.0, output
    assert re.search(r"^frozen_bn .* agree$", output, re.M), output


@pytest.mark.slow
def test_multi_worker_writes_the_statistics_of_the_union(tmp_path):
    output = run_example("multi_worker", tmp_path)
    assert "workers' statistics bitwise equal: True" in output, output
    gap = re.search(r"single process: (\S+)", output)
    assert gap is not None and float(gap.group(1)) < 1e-5, output
