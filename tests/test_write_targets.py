"""Tests that frozen_bn writes only over what it writes (issue 31): `export`
(SavedModel, ONNX), `cache_features(path=...)`, figures and the `frozen-bn`
commands. What a refused call finds at its target stays bitwise as it was.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _artifacts, _atomic, cli
from frozen_bn.exporting import FORMATS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()
# The writing paths differ per backend (SavedModel on TensorFlow and JAX,
# ONNX through tf2onnx, jax2onnx or torch): the tests run on each.
EXPORT_FORMATS = [
    f for f in ("tf_saved_model", "onnx") if f in FORMATS[BACKEND]
]
KIND = {"tf_saved_model": "directory", "onnx": "file"}
needs_saved_model = pytest.mark.skipif(
    "tf_saved_model" not in FORMATS[BACKEND], reason="no SavedModel here"
)


def small_model(mean=0.0):
    inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(3, name="dense")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    model = keras.Model(inputs, bn(x))
    bn.moving_mean.assign(np.full(3, mean, "float32"))
    return model


def inputs(count=4):
    return np.random.default_rng(0).normal(size=(count, 4)).astype("float32")


def tree(path):
    """Every entry under `path` (itself included): a file's bytes, a link's
    target, `None` for a directory; what "bitwise as it was" compares."""
    path = str(path)
    found = {}
    for root, directories, files in os.walk(path):
        found[os.path.relpath(root, path)] = None
        for name in directories + files:
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if os.path.islink(full):
                found[relative] = ("link", os.readlink(full))
            elif os.path.isfile(full):
                with open(full, "rb") as file:
                    found[relative] = file.read()
    if not found and os.path.lexists(path):  # A file or a link.
        found["."] = tree(os.path.dirname(path))[os.path.basename(path)]
    return found


def hidden(directory):
    """Temporary entries left in `directory`."""
    return [name for name in os.listdir(directory) if ".tmp" in name]


def user_directory(path):
    os.mkdir(path)
    with open(os.path.join(path, "keep.txt"), "w") as file:
        file.write("the user's")


def user_file(path):
    with open(path, "w") as file:
        file.write("the user's")


def link_to_saved_model(path):
    frozen_bn.export(small_model(), f"{path}.real")
    os.symlink(f"{path}.real", path)


# ----------------------------------------------------------------------------
# The rule: nothing at `filepath` that export did not write is removed


TARGETS = [
    ("onnx", user_directory),
    ("tf_saved_model", user_directory),
    ("tf_saved_model", user_file),
    ("tf_saved_model", link_to_saved_model),
]


@pytest.mark.parametrize(
    "format, make",
    [
        pytest.param(
            f,
            make,
            id=f"{f}-{make.__name__}",
            marks=() if f in FORMATS[BACKEND] else pytest.mark.skip(f),
        )
        for f, make in TARGETS
    ],
)
def test_export_refuses_what_it_did_not_write(tmp_path, format, make):
    target = str(tmp_path / "userdir")
    make(target)
    before = tree(tmp_path)

    with pytest.raises(ValueError, match="`filepath`") as info:
        frozen_bn.export(small_model(), target, format)

    assert f"filepath={target!r}" in str(info.value)
    assert tree(tmp_path) == before


PLACES = {
    "empty": "",
    "dot": ".",
    "working directory": "{cwd}",
    "home": "{home}",
    "root": "/",
}


@pytest.mark.parametrize("format", EXPORT_FORMATS)
@pytest.mark.parametrize("place", PLACES)
def test_export_refuses_the_working_directory_home_and_root(
    tmp_path, monkeypatch, format, place
):
    # Empty directories: a SavedModel may replace an empty directory, but
    # never one of these.
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    filepath = PLACES[place].format(cwd=work, home=home)
    before = tree(tmp_path)

    with pytest.raises(ValueError, match="`filepath`") as info:
        frozen_bn.export(small_model(), filepath, format)

    assert f"filepath={filepath!r}" in str(info.value)
    assert tree(tmp_path) == before


def served(path, format):
    return _artifacts.run(path, format, inputs())[0]


@needs_saved_model
@pytest.mark.parametrize("old", ["saved_model", "empty_directory"])
def test_export_replaces_a_saved_model_or_an_empty_directory(tmp_path, old):
    target = str(tmp_path / "served")
    if old == "saved_model":
        frozen_bn.export(small_model(mean=5.0), target)
    else:
        os.mkdir(target)
    model = small_model()

    frozen_bn.export(model, target)

    np.testing.assert_allclose(
        served(target, "tf_saved_model"),
        model.predict(inputs(), verbose=0),
        atol=1e-5,
    )
    assert os.listdir(tmp_path) == ["served"]


# ----------------------------------------------------------------------------
# A failed check leaves the old artifact


class TracedCount(keras.layers.Layer):
    """Adds how many times its call was traced: the artifact (its own
    trace) and `predict` (a later one) disagree by 1 or more."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.traces = 0

    def call(self, x):
        self.traces += 1
        return x + float(self.traces)


def disagreeing_model():
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, TracedCount()(keras.layers.Dense(3)(inputs)))


@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_a_failed_check_leaves_the_old_artifact(tmp_path, format):
    target = str(tmp_path / ("served" + (".onnx" if format == "onnx" else "")))
    frozen_bn.export(small_model(), target, format)
    before = tree(tmp_path)

    with pytest.raises(frozen_bn.ExportMismatchError) as info:
        frozen_bn.export(
            disagreeing_model(), target, format, check_data=inputs()
        )

    assert info.value.report.filepath == target
    assert info.value.report.outputs[0].max_abs_error >= 1.0
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------
# A signal between the two renames

# Runs `frozen-bn export MODEL OUT` and sends itself `signum` right after
# the old artifact at OUT is renamed aside, before the new one is renamed in.
SIGNAL_AFTER_FIRST_RENAME = """
import os, signal, sys

model, target, signum = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
replace = os.replace


def replace_then_signal(source, destination, **kwargs):
    replace(source, destination, **kwargs)
    if os.path.abspath(source) == target:
        os.replace = replace
        os.kill(os.getpid(), int(signum))


os.replace = replace_then_signal
from frozen_bn import cli

sys.exit(cli.main(["export", model, target]))
"""


@needs_saved_model
@pytest.mark.parametrize(
    "signum, code, word",
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
)
def test_a_signal_between_the_renames_keeps_the_old_saved_model(
    tmp_path, signum, code, word
):
    small_model().save(tmp_path / "model.keras")
    target = tmp_path / "served"
    frozen_bn.export(small_model(mean=5.0), str(target))
    before = tree(target)
    env = {**os.environ, "PYTHONPATH": ROOT}

    run = subprocess.run(
        [
            sys.executable,
            "-c",
            SIGNAL_AFTER_FIRST_RENAME,
            str(tmp_path / "model.keras"),
            str(target),
            str(int(signum)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )

    assert run.returncode == code, run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"frozen-bn export: {word}"
    assert tree(target) == before
    assert sorted(os.listdir(tmp_path)) == ["model.keras", "served"]


# ----------------------------------------------------------------------------
# Unwritable places: our error, naming `filepath` as given


def unwritable_places(tmp_path):
    user_file(tmp_path / "afile")
    return {
        "proc": "/proc/frozen_bn_model",
        "sys": "/sys/frozen_bn_model",
        "under_a_file": str(tmp_path / "afile" / "model"),
    }


@pytest.mark.parametrize("format", EXPORT_FORMATS)
@pytest.mark.parametrize("place", ["proc", "sys", "under_a_file"])
def test_export_to_an_unwritable_place_names_filepath(tmp_path, format, place):
    filepath = unwritable_places(tmp_path)[place]

    with pytest.raises((OSError, ValueError)) as info:
        frozen_bn.export(small_model(), filepath, format)

    assert repr(filepath) in str(info.value)
    assert ".tmp" not in str(info.value)
    if isinstance(info.value, OSError):
        assert info.value.filename == filepath
    assert not os.path.lexists(filepath)


@pytest.mark.parametrize("format", EXPORT_FORMATS)
@pytest.mark.parametrize(
    "place", ["proc", "sys", "under_a_file", "a_file", "dot", "user_dir"]
)
def test_cli_export_to_a_place_it_must_not_write_exits_2(
    tmp_path, monkeypatch, capsys, format, place
):
    small_model().save(tmp_path / "model.keras")
    places = unwritable_places(tmp_path)
    user_directory(tmp_path / "userdir")
    places.update(a_file=str(tmp_path / "afile"), dot=".")
    places["user_dir"] = str(tmp_path / "userdir")
    monkeypatch.chdir(tmp_path)
    if place == "a_file" and format == "onnx":
        pytest.skip("an ONNX file replaces a file")
    before = tree(tmp_path)
    output = places[place]

    code = cli.main(
        ["export", str(tmp_path / "model.keras"), output, "--format", format]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("frozen-bn export: error: ")
    assert err.count("\n") == 1 and ".tmp" not in err
    assert repr(output) in err or f"cannot write {output}:" in err
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------
# cache_features(path=...)


@pytest.mark.parametrize(
    "make, error",
    [("file", ValueError), ("int", TypeError), ("empty", ValueError)],
)
def test_cache_features_path_is_checked(tmp_path, make, error):
    user_file(tmp_path / "afile")
    path = {"file": str(tmp_path / "afile"), "int": 5, "empty": ""}[make]
    before = tree(tmp_path)

    with pytest.raises(error, match="`path`") as info:
        frozen_bn.cache_features(small_model(), inputs(), path=path, verbose=0)

    assert f"path={path!r}" in str(info.value)
    assert tree(tmp_path) == before


def test_cache_features_refuses_a_directory_named_like_its_file(tmp_path):
    user_directory(tmp_path / "features_0.npy")
    before = tree(tmp_path)

    with pytest.raises(ValueError, match="`path`") as info:
        frozen_bn.cache_features(
            small_model(), inputs(), path=tmp_path, verbose=0
        )

    assert f"path={str(tmp_path)!r}" in str(info.value)
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------
# Figures and the .keras outputs of the CLI


@pytest.mark.parametrize("make", [user_directory, "link"])
def test_save_figure_refuses_what_is_not_a_file(tmp_path, make):
    figure = pytest.importorskip("matplotlib.figure").Figure()
    target = str(tmp_path / "plot.png")
    if make == "link":
        user_file(tmp_path / "keep.png")
        os.symlink(tmp_path / "keep.png", target)
    else:
        make(target)
    before = tree(tmp_path)

    with pytest.raises(ValueError, match="`path`"):
        _atomic.save_figure(figure, target)

    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["patch", "unpatch", "fold"])
def test_cli_model_output_is_not_written_over_a_link(
    tmp_path, monkeypatch, capsys, command
):
    monkeypatch.chdir(tmp_path)
    small_model().save(tmp_path / "in.keras")
    small_model().save(tmp_path / "keep.keras")
    os.symlink(tmp_path / "keep.keras", tmp_path / "out.keras")
    before = tree(tmp_path)

    code = cli.main([command, str(tmp_path / "in.keras"), "out.keras"])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "out.keras" in err
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------
# The entries written beside a file (an ONNX model's external data)


def write_model_and_data(path):
    for name, content in ((path, b"new model"), (f"{path}.data", b"new")):
        with open(name, "wb") as file:
            file.write(content)


def test_entries_beside_replace_files_only(tmp_path):
    target = str(tmp_path / "m.onnx")
    with open(target, "wb") as file:
        file.write(b"old model")
    user_directory(f"{target}.data")
    before = tree(tmp_path)

    with (
        pytest.raises(ValueError, match=r"m\.onnx\.data") as info,
        _atomic.replacing_entries(target, "filepath") as path,
    ):
        write_model_and_data(path)

    assert f"filepath={target!r}" in str(info.value)
    assert tree(tmp_path) == before
    os.remove(f"{target}.data/keep.txt")
    os.rmdir(f"{target}.data")
    user_file(f"{target}.data")  # A file where a file goes is replaced.

    with _atomic.replacing_entries(target, "filepath") as path:
        write_model_and_data(path)

    assert tree(tmp_path) == {
        ".": None,
        "m.onnx": b"new model",
        "m.onnx.data": b"new",
    }


def test_an_interrupted_move_puts_every_entry_back(tmp_path, monkeypatch):
    target = str(tmp_path / "m.onnx")
    write_model_and_data(target)
    before = tree(tmp_path)
    replace, calls = os.replace, []

    def interrupted_on_the_third(source, destination):
        calls.append(source)
        if len(calls) == 3:  # The first entry is in place; the second next.
            raise KeyboardInterrupt
        replace(source, destination)

    with (
        pytest.raises(KeyboardInterrupt),
        _atomic.replacing_entries(target, "filepath") as path,
    ):
        write_model_and_data(path)
        monkeypatch.setattr(os, "replace", interrupted_on_the_third)

    assert tree(tmp_path) == before
