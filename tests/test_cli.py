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
from frozen_bn import _tf_logs, _walk, cli
from frozen_bn.cli import _signals
from tests.guide_pattern import SPREADS_TRAINING_DEFAULT, augmented_conv_net
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


@pytest.mark.parametrize(
    "signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_whose_exception_python_drops_still_ends_the_run(
    signum, code, monkeypatch
):
    # Python drops an exception raised in __del__ (or in a gc callback,
    # where a Ctrl-C landed in CI) and prints its traceback: the run goes
    # on, prints nothing, then reports the signal.
    class RaisesTheSignalWhenCollected:
        def __del__(self):
            signal.raise_signal(signum)

    printed = []
    monkeypatch.setattr(sys, "unraisablehook", printed.append)
    before = signal.getsignal(signum)
    went_on = False
    with (
        pytest.raises(_signals.Stopped) as stopped,
        _signals.stopped_by_signals(),
    ):
        RaisesTheSignalWhenCollected()
        went_on = True
    assert went_on
    assert stopped.value.exit_code == code
    assert printed == []
    assert signal.getsignal(signum) is before
    assert sys.unraisablehook == printed.append


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
    helped = _run([sys.executable, "-m", "frozen_bn", "--help"])
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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The console script pip installed beside this Python; it runs the code of
# this checkout through PYTHONPATH.
CONSOLE_SCRIPT = shutil.which("frozen-bn", path=os.path.dirname(sys.executable))
needs_console_script = pytest.mark.skipif(
    CONSOLE_SCRIPT is None, reason="frozen-bn is not installed in this venv"
)
# The start of a line TensorFlow's C++ or absl logs.
TENSORFLOW_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} |WARNING: All log messages before absl)", re.M
)


def _run(command, level=None, backend=None):
    """Runs `command` with this checkout first on the path; `level`:
    TF_CPP_MIN_LOG_LEVEL, else unset."""
    env = {k: v for k, v in os.environ.items() if k != _tf_logs.VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    if level is not None:
        env[_tf_logs.VARIABLE] = level
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(command, capture_output=True, text=True, env=env)


HELP_COMMANDS = [
    ["--help"],
    ["--version"],
    *([name, "--help"] for name in SUBCOMMANDS),
]


@needs_console_script
@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_help_and_version_answer_on_stdout_alone(command):
    run = _run([CONSOLE_SCRIPT, *command])
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    assert run.stdout.startswith(
        "frozen-bn " if command == ["--version"] else "usage: frozen-bn"
    )


@needs_console_script
@pytest.mark.slow  # two TensorFlow start-ups
def test_commands_print_no_tensorflow_logs_unless_verbose(tmp_path):
    path = str(tmp_path / "in.keras")
    saved_model(path)
    assert cli.main(["patch", path, str(tmp_path / "patched.keras")]) == 0
    # A model holding frozen_bn's layers: the command registers them.
    run = _run([CONSOLE_SCRIPT, "inspect", str(tmp_path / "patched.keras")])
    assert run.returncode == 0, run.stderr
    assert "2 BatchNormalization layers" in run.stdout
    assert run.stderr == ""
    if keras.backend.backend() == "tensorflow":
        verbose = _run([CONSOLE_SCRIPT, "--verbose", "inspect", path])
        assert verbose.returncode == 0, verbose.stderr
        assert TENSORFLOW_LOG_LINE.search(verbose.stderr), verbose.stderr


def test_error_exits_2_with_one_line_on_stderr(tmp_path):
    run = _run([sys.executable, "-m", "frozen_bn", "inspect", "absent.keras"])
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr == (
        "frozen-bn inspect: error: no such model file: absent.keras\n"
    )


def test_the_command_line_imports_keras_only_to_run_a_command(tmp_path):
    # Named like the console script, which imports the package first.
    script = tmp_path / "frozen-bn"
    script.write_text(
        "import sys\n"
        "import frozen_bn.cli\n"
        "print('keras' in sys.modules, hasattr(frozen_bn, 'diagnose'))\n"
    )
    assert _run([sys.executable, str(script)]).stdout.split() == [
        "False",
        "False",
    ]


def test_import_registers_the_layers_and_keeps_the_log_level(tmp_path):
    path = str(tmp_path / "patched.keras")
    frozen_bn.patch_model(saved_model(tmp_path / "in.keras")).save(path)
    code = (
        "import os, keras, frozen_bn; "
        f"model = keras.models.load_model({path!r}); "
        "print(type(model.get_layer('top_bn')).__module__, "
        f"os.environ.get({_tf_logs.VARIABLE!r}))"
    )
    loaded = _run([sys.executable, "-c", code], level="1")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["frozen_bn.layers", "1"]
    # Unset, it stays as Keras alone leaves it (Keras sets it on some
    # backends).
    keras_alone = _run(
        [
            sys.executable,
            "-c",
            f"import os, keras; print(os.environ.get({_tf_logs.VARIABLE!r}))",
        ]
    )
    unset = _run([sys.executable, "-c", code])
    assert unset.stdout.split() == [
        "frozen_bn.layers",
        keras_alone.stdout.strip(),
    ]


@pytest.mark.slow  # four TensorFlow start-ups
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="TensorFlow logs at start-up when Keras imports it",
)
def test_import_makes_tensorflow_start_up_obey_the_log_level():
    def log_lines(statement, level, backend=None):
        run = _run([sys.executable, "-c", statement], level, backend)
        assert run.returncode == 0, run.stderr
        return [
            line.split("]", 1)[-1]  # without time and thread
            for line in run.stderr.splitlines()
            if TENSORFLOW_LOG_LINE.match(line)
        ]

    # TensorFlow 2.21 alone logs its start-up whatever the level ...
    stock = log_lines("import keras", level="3")
    assert stock, "TensorFlow started quietly: this test checks nothing"
    # ... frozen_bn holds those lines to the level, and with no level set
    # leaves TensorFlow's logs as they are.
    assert log_lines("import frozen_bn", level="3") == []
    assert set(stock) <= set(log_lines("import frozen_bn", level=None))
    # On JAX, Keras imports TensorFlow only to seed it; a look for it
    # (`find_spec`, as the demo makes) does not use up the filter.
    seeded = (
        "import importlib.util, frozen_bn, keras; "
        "importlib.util.find_spec('tensorflow'); "
        "keras.utils.set_random_seed(0)"
    )
    assert log_lines(seeded, level="3", backend="jax") == []


@pytest.mark.parametrize(
    "line, lowest_level_hiding_it",
    [
        (b"WARNING: All log messages before absl::InitializeLog() is", 1),
        (b"I0000 00:00:1796534690.874917    9887 port.cc:153] oneDNN", 1),
        (b"W0000 00:00:1796534690.874917    9887 x.cc:1] warning", 2),
        (b"E0000 00:00:1796534735.938766   10067 cuda.cc:52] failed", 3),
        (b"F0000 00:00:1796534735.938766   10067 x.cc:1] fatal", 4),
        (b"Traceback (most recent call last):", 4),
    ],
)
def test_start_up_lines_hidden_from_their_level(line, lowest_level_hiding_it):
    for level in range(4):
        assert _tf_logs._shown(line + b"\n", level) == (
            level < lowest_level_hiding_it
        )


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


def test_inspect_names_the_layer_that_trains_a_bn_in_a_plain_call(
    tmp_path, capsys
):
    path = str(tmp_path / "augmented.keras")
    augmented_conv_net().save(path)

    assert cli.main(["inspect", path]) == 0

    out = capsys.readouterr().out
    assert ("bn (after flip)" in out) is SPREADS_TRAINING_DEFAULT
