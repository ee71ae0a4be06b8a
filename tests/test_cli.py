"""Tests for the `frozen-bn` command line tool: patch, unpatch, its entry
points and what TensorFlow logs when it starts."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest

import frozen_bn
from frozen_bn import _walk, cli
from tests.helpers import all_weights, assert_weights_bitwise_equal


def saved_model(path):
    inputs = keras.Input((6,))
    x = keras.layers.Dense(4)(inputs)
    base = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(x))
    outer_inputs = keras.Input((6,))
    outputs = keras.layers.BatchNormalization(name="top_bn")(
        base(outer_inputs, training=False)
    )
    model = keras.Model(outer_inputs, outputs)
    model.save(path)
    return model


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_patch_then_unpatch_files(tmp_path, capsys, suffix):
    original = saved_model(tmp_path / f"in{suffix}")
    patched_path = str(tmp_path / f"patched{suffix}")

    code = cli.main(["patch", str(tmp_path / f"in{suffix}"), patched_path])

    assert code == 0
    assert "patched" in capsys.readouterr().out
    patched = keras.models.load_model(patched_path)
    freeze = {
        layer.name: layer.freeze_moving_stats
        for layer in _walk.batch_norm_layers(patched)
    }
    assert freeze == {"bn": True, "top_bn": False}
    assert_weights_bitwise_equal(all_weights(original), all_weights(patched))

    restored_path = str(tmp_path / f"restored{suffix}")
    assert cli.main(["unpatch", patched_path, restored_path]) == 0
    restored = keras.models.load_model(restored_path)
    bn_classes = {type(layer) for layer in _walk.batch_norm_layers(restored)}
    assert bn_classes == {keras.layers.BatchNormalization}
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    np.testing.assert_array_equal(
        restored.predict(x, verbose=0), original.predict(x, verbose=0)
    )


@pytest.mark.parametrize("choice, expected", [("all", True), ("none", False)])
def test_freeze_moving_stats_option(tmp_path, choice, expected):
    saved_model(tmp_path / "in.keras")
    out = str(tmp_path / "out.keras")
    assert (
        cli.main(
            [
                "patch",
                str(tmp_path / "in.keras"),
                out,
                "--freeze-moving-stats",
                choice,
            ]
        )
        == 0
    )
    layers = _walk.batch_norm_layers(keras.models.load_model(out))
    assert [layer.freeze_moving_stats for layer in layers] == [
        expected,
        expected,
    ]


def test_missing_file_exits_2_with_message_on_stderr(tmp_path, capsys):
    code = cli.main(
        ["patch", str(tmp_path / "absent.keras"), str(tmp_path / "o.keras")]
    )
    assert code == 2
    captured = capsys.readouterr()
    assert "no such model file" in captured.err
    assert captured.out == ""


def test_a_file_that_is_not_a_model_exits_2(tmp_path, capsys):
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip archive")
    assert cli.main(["unpatch", str(broken), str(tmp_path / "o.keras")]) == 2
    assert (
        f"{broken} is not a Keras model file: a keras model file is a zip "
        "archive, and this one is not" in capsys.readouterr().err
    )


def test_a_zip_that_is_not_a_model_exits_2(tmp_path, capsys):
    archive = tmp_path / "archive.keras"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("notes.txt", "hello")
    assert cli.main(["patch", str(archive), str(tmp_path / "o.keras")]) == 2
    assert "cannot read model file" in capsys.readouterr().err


def test_directories_exit_2(tmp_path, capsys):
    saved_model(tmp_path / "in.keras")
    (tmp_path / "dir.keras").mkdir()
    source, folder = str(tmp_path / "in.keras"), str(tmp_path / "dir.keras")
    assert cli.main(["patch", folder, str(tmp_path / "o.keras")]) == 2
    assert "is a directory, not a model file" in capsys.readouterr().err
    assert cli.main(["patch", source, folder]) == 2
    assert "output path is a directory" in capsys.readouterr().err
    missing = str(tmp_path / "missing" / "o.keras")
    assert cli.main(["fold", source, missing]) == 2
    assert "output directory does not exist" in capsys.readouterr().err


def test_patch_keeps_the_compile_config_and_optimizer_state(tmp_path):
    path = tmp_path / "in.keras"
    model = saved_model(path)
    model.compile(keras.optimizers.Adam(1e-3), "mse")
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    model.fit(x, x[:, :4], epochs=2, verbose=0)
    model.save(path)

    assert cli.main(["patch", str(path), str(path)]) == 0  # In place.

    patched = keras.models.load_model(path)
    assert patched.compiled
    assert int(patched.optimizer.iterations.numpy()) == 2
    assert_weights_bitwise_equal(
        [
            (v.path, keras.ops.convert_to_numpy(v))
            for v in model.optimizer.variables
        ],
        [
            (v.path, keras.ops.convert_to_numpy(v))
            for v in patched.optimizer.variables
        ],
    )
    assert os.listdir(tmp_path) == ["in.keras"]  # No temporary file left.


def big_model():
    """A model whose file takes a while to write (about 16 MB)."""
    inputs = keras.Input((1000,))
    x = keras.layers.Dense(2000)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(1000)(x))


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, code, word, same_path",
    [
        (signal.SIGINT, 130, "interrupted", True),
        (signal.SIGTERM, 143, "terminated", True),
        (signal.SIGINT, 130, "interrupted", False),
    ],
    ids=["sigint-onto-input", "sigterm-onto-input", "sigint-elsewhere"],
)
def test_interrupted_patch_leaves_the_target_old_or_new(
    tmp_path, signum, code, word, same_path
):
    source = tmp_path / "in.keras"
    big_model().save(source)
    target = source if same_path else tmp_path / "out.keras"
    if not same_path:
        shutil.copy(source, target)  # An old file that must survive.
    old = target.read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "frozen_bn", "patch", str(source), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The temporary file appears when the save begins.
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if any(".tmp" in name for name in os.listdir(tmp_path)):
            break
        time.sleep(0.001)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)

    assert process.returncode == code, err
    assert err.strip().splitlines()[-1] == f"frozen-bn patch: {word}"
    assert "Traceback" not in err
    assert not [name for name in os.listdir(tmp_path) if ".tmp" in name]
    if target.read_bytes() != old:  # Then it is the whole new file.
        patched = keras.models.load_model(target)
        assert all(
            isinstance(layer, frozen_bn.BatchNormalization)
            for layer in _walk.batch_norm_layers(patched)
        )


def test_wrong_suffix_exits_2(tmp_path, capsys):
    saved_model(tmp_path / "in.keras")
    assert (
        cli.main(
            ["patch", str(tmp_path / "in.keras"), str(tmp_path / "out.txt")]
        )
        == 2
    )
    assert "expected a .keras or .h5 output path" in capsys.readouterr().err


SUBCOMMANDS = ["patch", "unpatch", "fold", "demo", "inspect", "diagnose"]


def test_module_entry_point_lists_every_subcommand():
    run = [sys.executable, "-m", "frozen_bn", "--help"]
    helped = subprocess.run(run, capture_output=True, text=True)
    assert helped.returncode == 0
    for name in SUBCOMMANDS:
        # Whole words, each at the start of a line of the command list:
        # "patch" inside "unpatch" does not count.
        assert re.search(rf"^\s+{name}\s", helped.stdout, re.M), name


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert (
        capsys.readouterr().out.strip() == f"frozen-bn {frozen_bn.__version__}"
    )


def test_missing_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["patch"])
    assert exit_info.value.code == 2
    assert "the following arguments are required" in capsys.readouterr().err


def _run_python(command, level=None, backend=None):
    """Runs `python *command`; `level`: TF_CPP_MIN_LOG_LEVEL, else unset."""
    env = {
        k: v for k, v in os.environ.items() if k != frozen_bn._tf_logs.VARIABLE
    }
    if level is not None:
        env[frozen_bn._tf_logs.VARIABLE] = level
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, env=env
    )


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow logs from C++ at start-up",
)
def test_command_line_hides_tensorflow_start_up_errors(tmp_path):
    # On a machine without a GPU, TensorFlow logs a failed cuInit at ERROR
    # level ("E0000 ... failed call to cuInit: ... CUDA error").
    saved_model(tmp_path / "in.keras")
    run = _run_python(
        ["-m", "frozen_bn", "inspect", str(tmp_path / "in.keras")]
    )
    assert run.returncode == 0, run.stderr
    assert "2 BatchNormalization layers" in run.stdout
    noise = [
        line
        for line in run.stderr.splitlines()
        if line.startswith("E0000") or "cuInit" in line
    ]
    assert noise == []


def test_console_script_quiets_tensorflow_unless_the_user_set_a_level(tmp_path):
    # Named like the `frozen-bn` console script, which runs this import.
    script = tmp_path / "frozen-bn"
    script.write_text(
        "import os\n"
        "import frozen_bn.cli\n"
        f"print(os.environ.get({frozen_bn._tf_logs.VARIABLE!r}))\n"
    )
    # The numpy backend: the environment is the point, not TensorFlow.
    assert (
        _run_python([str(script)], backend="numpy").stdout.strip()
        == frozen_bn._tf_logs.QUIET
    )
    assert (
        _run_python([str(script)], level="0", backend="numpy").stdout.strip()
        == "0"
    )
    # A program that imports frozen_bn keeps TensorFlow's defaults.
    imported = _run_python(
        [
            "-c",
            "import os, frozen_bn; "
            f"print(os.environ.get({frozen_bn._tf_logs.VARIABLE!r}))",
        ],
        backend="numpy",
    )
    assert imported.stdout.strip() != frozen_bn._tf_logs.QUIET


def test_inspect_prints_the_stage_table_before_the_batch_norm_table(
    tmp_path, capsys
):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.BatchNormalization(name="pooled_bn")(x)
    model = frozen_bn.freeze(keras.Model(inputs, x), stages=1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    summary = frozen_bn.freeze_summary(model).to_text()

    assert cli.main(["inspect", path]) == 0

    out = capsys.readouterr().out
    stage_table, batch_norm_part = out.split("\n\n", 1)
    assert stage_table == f"{path}: stages\n{summary}"
    assert re.search(r"^stage0 .* 1 frozen$", stage_table, re.M)
    assert re.search(r"^stage1 .* 1 frozen$", stage_table, re.M)
    assert batch_norm_part.startswith(f"{path}: 2 BatchNormalization layers")
