"""Inputs that used to hang, exhaust memory or fail deep inside numpy.

The data contract on every backend: arrays without a batch axis, data that
declares it never ends (read forever unless `steps` bounds it), labels that
are not numbers. The command line on TensorFlow: paths that are not regular
files (a FIFO blocks its reader, `/dev/zero` never ends) and data files of
the wrong kind, each exit 2 with one line naming the path the user gave.
"""

import contextlib
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _tf_logs, cli
from frozen_bn.callbacks import ModeGapMonitor, PreciseBN
from tests.helpers import (
    all_weights,
    assert_weights_bitwise_equal,
    images,
    moving_statistics,
)
from tests.test_bad_input import assert_clean_error, conv_net

tf = pytest.importorskip("tensorflow")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Long enough for a cold TensorFlow start-up on a busy machine; a command
# that blocks on a FIFO or reads /dev/zero runs past it and fails.
COMMAND_TIMEOUT = 120


@contextlib.contextmanager
def deadline(seconds=30):
    """Fails the test, rather than hanging it, if the block runs too long."""

    def expire(signum, frame):
        raise TimeoutError(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class EndlessBatches(keras.utils.PyDataset):
    """A `PyDataset` that declares it never ends (`num_batches` is None)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    @property
    def num_batches(self):
        return None

    def __getitem__(self, index):
        return self.batch


def endless_dataset(batch):
    return tf.data.Dataset.from_tensors(batch).repeat()


# --- Arrays without a batch axis ---------------------------------------

SCALAR_CALLS = {
    "recalibrate": (lambda m, s: frozen_bn.recalibrate(m, s), "data"),
    "recalibrate (x, y)": (
        lambda m, s: frozen_bn.recalibrate(m, (s, np.zeros(4))),
        "data",
    ),
    "diagnose": (lambda m, s: frozen_bn.diagnose(m, s, verbose=0), "x"),
    "cache_features": (
        lambda m, s: frozen_bn.cache_features(m, s, verbose=0),
        "data",
    ),
    "ModeGapMonitor": (lambda m, s: ModeGapMonitor(s), "x"),
    "PreciseBN": (lambda m, s: PreciseBN(s), "data"),
}


@pytest.mark.parametrize("scalar", [np.float32(1.5), np.array(2.0)])
@pytest.mark.parametrize("call", sorted(SCALAR_CALLS))
def test_a_scalar_as_data_is_our_value_error_naming_the_argument(call, scalar):
    model = conv_net()
    before = all_weights(model)
    run, argument = SCALAR_CALLS[call]
    with pytest.raises(ValueError) as excinfo:
        run(model, scalar)
    assert_clean_error(excinfo, ValueError, argument)
    assert "shape ()" in str(excinfo.value)
    assert_weights_bitwise_equal(before, all_weights(model))


# --- Data that never ends ---------------------------------------------

ENDLESS_FORMS = {"tf.data": endless_dataset, "PyDataset": EndlessBatches}


@pytest.mark.parametrize("form", sorted(ENDLESS_FORMS))
def test_recalibrate_refuses_endless_data_without_steps(form):
    model = conv_net()
    before = all_weights(model)
    data = ENDLESS_FORMS[form](images(8))
    with deadline(), pytest.raises(ValueError) as excinfo:
        frozen_bn.recalibrate(model, data, verbose=0)
    assert_clean_error(excinfo, ValueError, "data")
    assert "`steps`" in str(excinfo.value)
    assert_weights_bitwise_equal(before, all_weights(model))


@pytest.mark.parametrize("form", sorted(ENDLESS_FORMS))
def test_recalibrate_reads_steps_batches_of_endless_data(form):
    batch = images(8)
    model, reference = conv_net(), conv_net()
    reference.set_weights(model.get_weights())
    with deadline():
        frozen_bn.recalibrate(
            model, ENDLESS_FORMS[form](batch), steps=3, verbose=0
        )
    # Three copies of one batch: the statistics of that batch.
    frozen_bn.recalibrate(reference, batch, batch_size=8, verbose=0)
    for (mean, var), (ref_mean, ref_var) in zip(
        moving_statistics(model), moving_statistics(reference), strict=True
    ):
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(var, ref_var, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", sorted(ENDLESS_FORMS))
def test_cache_features_refuses_endless_data(form):
    # `cache_features` has no `steps`: the error does not send users to it.
    with deadline(), pytest.raises(ValueError) as excinfo:
        frozen_bn.cache_features(
            conv_net(), ENDLESS_FORMS[form](images(8)), verbose=0
        )
    assert_clean_error(excinfo, ValueError, "data")
    assert "`steps`" not in str(excinfo.value)
    assert "take(" in str(excinfo.value)


@pytest.mark.parametrize("form", sorted(ENDLESS_FORMS))
def test_precise_bn_refuses_endless_data_without_steps_when_made(form):
    with pytest.raises(ValueError) as excinfo:
        PreciseBN(ENDLESS_FORMS[form](images(8)))
    assert_clean_error(excinfo, ValueError, "data")
    assert "`steps`" in str(excinfo.value)


def test_precise_bn_reads_steps_batches_of_an_endless_dataset():
    model = conv_net()
    model.compile("sgd", "mse")
    x = images(16)
    callback = PreciseBN(endless_dataset(images(8, seed=1)), steps=2)
    with deadline(120):
        model.fit(
            x, np.zeros((16, 2)), epochs=1, verbose=0, callbacks=[callback]
        )
    reference = keras.models.clone_model(model)
    reference.set_weights(model.get_weights())
    frozen_bn.recalibrate(reference, images(8, seed=1), verbose=0)
    for (mean, _), (ref_mean, _) in zip(
        moving_statistics(model), moving_statistics(reference), strict=True
    ):
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-5, atol=1e-5)


# --- Labels that are not numbers --------------------------------------


class EpochsEnded(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_epoch_end(self, epoch, logs=None):
        self.count += 1


LABELS = {
    "strings": (np.array(["cat", "dog"] * 8), TypeError),
    "class 5 of 2": (np.full(16, 5), ValueError),
}


@pytest.mark.parametrize("labels", sorted(LABELS))
def test_mode_gap_monitor_refuses_bad_labels_when_training_starts(labels):
    y, error_type = LABELS[labels]
    model = conv_net()
    model.compile("sgd", "mse")
    x = images(16)
    ended = EpochsEnded()
    with pytest.raises(error_type) as excinfo:
        model.fit(
            x,
            np.zeros((16, 2)),
            epochs=1,
            verbose=0,
            # `ended` first: it counts an epoch before the monitor sees it.
            callbacks=[ended, ModeGapMonitor(x, y)],
        )
    assert_clean_error(excinfo, error_type, "y")
    assert ended.count == 0


def test_diagnose_refuses_string_labels_of_a_multiclass_model():
    model = conv_net()
    before = all_weights(model)
    with pytest.raises(TypeError) as excinfo:
        frozen_bn.diagnose(
            model, images(16), np.array(["cat", "dog"] * 8), verbose=0
        )
    assert_clean_error(excinfo, TypeError, "y")
    assert "<U3" in str(excinfo.value)
    assert_weights_bitwise_equal(before, all_weights(model))


# --- The command line: paths that are not regular files --------------

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the command line is tested on TensorFlow",
)


def run_cli(*args):
    """Runs `python -m frozen_bn ARGS`; a command that hangs fails."""
    # Unset, as for a user: the command quiets TensorFlow's logs itself.
    env = {k: v for k, v in os.environ.items() if k != _tf_logs.VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    try:
        return subprocess.run(
            [sys.executable, "-m", "frozen_bn", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"frozen-bn {' '.join(args)} still ran after the timeout")


def assert_refused(run, command, path):
    """Exit 2, nothing on stdout, one line on stderr naming `path`."""
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"frozen-bn {command}: error: {path} ")


def special_file(tmp_path, kind, name):
    """A FIFO, a symlink to /dev/zero, or a directory, at `name`."""
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        os.symlink("/dev/zero", path)
    else:
        os.mkdir(path)
    return str(path)


SPECIAL_KINDS = ["fifo", "zero", "directory"]


@needs_tensorflow
@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("command", ["inspect", "patch"])
def test_a_model_path_that_is_not_a_regular_file_exits_2(
    tmp_path, command, kind
):
    path = special_file(tmp_path, kind, "model.keras")
    output = [str(tmp_path / "out.keras")] if command == "patch" else []
    assert_refused(run_cli(command, path, *output), command, path)
    assert not (tmp_path / "out.keras").exists()


@needs_tensorflow
@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_an_export_check_path_that_is_not_a_regular_file_exits_2(
    tmp_path, kind
):
    path = special_file(tmp_path, kind, "data.npz")
    model = str(tmp_path / "model.keras")
    conv_net().save(model)
    run = run_cli("export", model, str(tmp_path / "out"), "--check", path)
    assert_refused(run, "export", path)
    assert not (tmp_path / "out").exists()


@needs_tensorflow
def test_a_diagnose_data_path_that_is_a_fifo_exits_2(tmp_path):
    path = special_file(tmp_path, "fifo", "data.npz")
    model = str(tmp_path / "model.keras")
    conv_net().save(model)
    assert_refused(run_cli("diagnose", model, path), "diagnose", path)


# --- The command line: data files of the wrong kind -------------------


def write_npy(path):
    np.save(path, images(4))


def write_empty_npz(path):
    np.savez(path)


def write_model(path):
    conv_net().save(path)


def write_scalar_npz(path):
    np.savez(path, x=np.float32(1.0))


WRONG_DATA = {
    # name: (file name, writer, a word the error must hold)
    ".npy": ("data.npy", write_npy, ".npy"),
    "empty .npz": ("data.npz", write_empty_npz, "no arrays"),
    ".keras model": ("model.keras", write_model, "model file"),
    ".h5 model": ("model.h5", write_model, "HDF5"),
    "scalar x": ("data.npz", write_scalar_npz, "shape ()"),
}


@needs_tensorflow
@pytest.mark.parametrize("case", sorted(WRONG_DATA))
def test_a_data_file_of_the_wrong_kind_says_what_it_is(tmp_path, capsys, case):
    name, write, word = WRONG_DATA[case]
    model, data = str(tmp_path / "in.keras"), str(tmp_path / name)
    conv_net().save(model)
    write(data)
    assert cli.main(["diagnose", model, data]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("frozen-bn diagnose: error: ")
    assert data in lines[0]
    assert word in lines[0].replace(data, "")
