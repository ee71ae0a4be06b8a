"""The `frozen-bn` command line tool.

Every subcommand is a `Command`: its name, a one-line help, a function that
adds its arguments, and a function that runs it and returns an exit code.
Errors the user can fix are raised as `UsageError` and reported on stderr
with exit code 2. TensorFlow's C++ start-up logs are quieted before this
module runs, when the package is imported (see `frozen_bn._tf_logs`).
"""

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the command line or its files; shown without traceback."""


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def load_model_file(path):
    """Loads a `.keras` or `.h5` model file, with errors a user can act on."""
    if not os.path.isfile(path):
        raise UsageError(f"no such model file: {path}")
    if not path.endswith((".keras", ".h5")):
        raise UsageError(f"expected a .keras or .h5 model file, got: {path}")
    import keras

    import frozen_bn  # noqa: F401  (registers our layers for loading)

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for bad files.
        raise UsageError(f"cannot read model file {path}: {error}") from error


def save_model_file(model, path):
    if not path.endswith((".keras", ".h5")):
        raise UsageError(f"expected a .keras or .h5 output path, got: {path}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"output directory does not exist: {directory}")
    model.save(path)


def _add_in_out(parser):
    parser.add_argument(
        "input", metavar="IN", help="model file (.keras or .h5)"
    )
    parser.add_argument(
        "output", metavar="OUT", help="where to save the result"
    )


FREEZE_CHOICES = {"auto": None, "all": True, "none": False}


def _add_patch_arguments(parser):
    _add_in_out(parser)
    parser.add_argument(
        "--freeze-moving-stats",
        choices=sorted(FREEZE_CHOICES),
        default="auto",
        help=(
            "which patched layers keep their statistics fixed while gamma/beta "
            "train: 'auto' (default) those the model calls with "
            "training=False, 'all', or 'none'"
        ),
    )


def _run_patch(args):
    from frozen_bn.patching import patch_model

    model = load_model_file(args.input)
    freeze = FREEZE_CHOICES[args.freeze_moving_stats]
    patched = patch_model(model, freeze_moving_stats=freeze, inplace=True)
    save_model_file(patched, args.output)
    print(f"patched {args.input} -> {args.output}")
    return EXIT_OK


def _run_unpatch(args):
    from frozen_bn.patching import unpatch_model

    model = load_model_file(args.input)
    save_model_file(unpatch_model(model, inplace=True), args.output)
    print(f"unpatched {args.input} -> {args.output}")
    return EXIT_OK


def _run_fold(args):
    from frozen_bn.folding import fold_batch_norms

    model = load_model_file(args.input)
    try:
        folded, report = fold_batch_norms(model)
    except ValueError as error:
        raise UsageError(f"cannot fold {args.input}: {error}") from error
    save_model_file(folded, args.output)
    print(report.to_text())
    print(f"folded {args.input} -> {args.output}")
    return EXIT_OK


def _add_demo_arguments(parser):
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter stage 1 (4 epochs): about a minute on 2 CPU cores",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        metavar="SEED",
        help="seeds to run; results are averaged over them (default: 0)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="pretrain the base again even if cached weights exist",
    )
    parser.add_argument(
        "--out",
        metavar="PNG",
        help=(
            "where to write the figure, if matplotlib is installed (default: "
            "demo.png in the cache dir)"
        ),
    )
    parser.add_argument(
        "--cache-dir",
        metavar="DIR",
        help=(
            "where pretrained weights are cached (default: "
            "$XDG_CACHE_HOME/frozen_bn or ~/.cache/frozen_bn)"
        ),
    )


def _run_demo(args):
    from frozen_bn import demo

    missing = demo.missing_requirements()
    if missing:
        raise UsageError(
            f"the demo needs {', '.join(missing)}: "
            "pip install 'frozen_bn[demo]'"
        )
    graph_mode = demo.graph_mode_available()
    if not graph_mode:
        print("tensorflow/tf_keras not installed: skipping the graph-mode run")
    demo.run_demo(
        quick=args.quick,
        seeds=args.seeds,
        retrain=args.retrain,
        out=args.out,
        cache_dir=args.cache_dir,
        graph_mode=graph_mode,
    )
    return EXIT_OK


def _add_inspect_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL", help="model file (.keras or .h5)"
    )


def _run_inspect(args):
    from frozen_bn._fit_behaviour import (
        COLUMNS,
        BatchNormRow,
        fit_behaviours,
        switched_off_layers,
    )
    from frozen_bn._text import format_table

    model = load_model_file(args.model)
    rows = [
        BatchNormRow.of(layer, behaviour).cells()
        for layer, behaviour in fit_behaviours(model)
    ]
    print(f"{args.model}: {len(rows)} BatchNormalization layers")
    if rows:
        print("\n".join(format_table(COLUMNS, rows)))
    switched_off = switched_off_layers(model)
    if switched_off:
        print(
            "\nfit() keeps these layers in inference mode, because an "
            "earlier call was recorded with training=False (Keras 3.16): "
            + ", ".join(layer.name for layer in switched_off)
        )
    return EXIT_OK


def _add_diagnose_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL", help="model file (.keras or .h5)"
    )
    parser.add_argument(
        "data", metavar="DATA", help="a .npz file holding the model inputs"
    )
    parser.add_argument(
        "--inputs",
        metavar="KEY",
        help="the array of DATA holding the inputs (default: 'x', or the "
        "only array that is not the labels)",
    )
    parser.add_argument(
        "--labels", metavar="KEY", help="the array of DATA holding the labels"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="batch size (default: 32)"
    )
    parser.add_argument(
        "--plot", metavar="PNG", help="also save the report's plot there"
    )


def _load_arrays(args):
    """The inputs and labels named by `args` in the .npz file `args.data`."""
    import numpy as np

    if not os.path.isfile(args.data):
        raise UsageError(f"no such data file: {args.data}")
    try:
        with np.load(args.data, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except Exception as error:  # numpy raises many types for bad files.
        raise UsageError(
            f"cannot read data file {args.data}: {error}"
        ) from error
    candidates = [key for key in arrays if key != args.labels]
    key = args.inputs or ("x" if "x" in arrays else None)
    if key is None and len(candidates) == 1:
        key = candidates[0]
    for name, wanted in (("--inputs", key), ("--labels", args.labels)):
        if wanted is not None and wanted not in arrays:
            raise UsageError(
                f"{args.data} has no array {wanted!r} ({name}); it holds: "
                f"{', '.join(sorted(arrays))}"
            )
    if key is None:
        raise UsageError(
            f"{args.data} holds several arrays ({', '.join(sorted(arrays))}): "
            "name the inputs with --inputs"
        )
    return arrays[key], arrays.get(args.labels)


def _run_diagnose(args):
    from frozen_bn.diagnostics import diagnose

    if args.plot and not args.plot.endswith(".png"):
        raise UsageError(f"expected a .png plot path, got: {args.plot}")
    model = load_model_file(args.model)
    x, y = _load_arrays(args)
    try:
        report = diagnose(model, x, y, batch_size=args.batch_size, verbose=0)
    except (TypeError, ValueError) as error:
        raise UsageError(
            f"cannot diagnose {args.model} on {args.data}: {error}"
        ) from error
    print(report.to_text())
    if args.plot:
        try:
            figure = report.plot()
        except ImportError as error:
            raise UsageError(
                "--plot needs matplotlib: pip install 'frozen_bn[plot]'"
            ) from error
        figure.savefig(args.plot, dpi=120)
        print(f"plot saved to {args.plot}")
    return EXIT_OK


COMMANDS = [
    Command(
        "patch",
        "swap frozen_bn's BatchNormalization into a saved model",
        _add_patch_arguments,
        _run_patch,
    ),
    Command(
        "unpatch",
        "swap the stock BatchNormalization back into a saved model",
        _add_in_out,
        _run_unpatch,
    ),
    Command(
        "fold",
        "fold BatchNormalization layers into the layers before them",
        _add_in_out,
        _run_fold,
    ),
    Command(
        "demo",
        'the 2018 "Keras BN layer is broken" experiment (Datumbox) on real '
        "data: stock BN vs frozen_bn",
        _add_demo_arguments,
        _run_demo,
    ),
    Command(
        "inspect",
        "list every BatchNormalization layer and how fit() will run it",
        _add_inspect_arguments,
        _run_inspect,
    ),
    Command(
        "diagnose",
        "detect out-of-scale BatchNormalization statistics on data (.npz)",
        _add_diagnose_arguments,
        _run_diagnose,
    ),
]


def build_parser():
    parser = argparse.ArgumentParser(
        prog="frozen-bn",
        description="Keras BatchNormalization that stays frozen when frozen.",
    )
    from frozen_bn import __version__

    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True
    )
    for command in COMMANDS:
        sub = subparsers.add_parser(
            command.name, help=command.help, description=command.help
        )
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv=None):
    """Entry point of the `frozen-bn` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"frozen-bn {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
