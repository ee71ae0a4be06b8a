"""`frozen-bn inspect` and `diagnose`: what a model file's BN layers will do."""

from frozen_bn.cli._command import EXIT_OK, Command, UsageError
from frozen_bn.cli._files import (
    check_writable,
    load_arrays,
    load_model_file,
    save_figure_file,
)


def _add_inspect_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL", help="model file (.keras or .h5)"
    )


def _run_inspect(args):
    from frozen_bn._fit_behaviour import (
        COLUMNS,
        BatchNormRow,
        fit_behaviours,
        plain_call_pairs,
        switched_off_layers,
    )
    from frozen_bn._freeze_summary import freeze_summary
    from frozen_bn._reading import ModelReading
    from frozen_bn._text import format_table

    model = load_model_file(args.model)
    reading = ModelReading(model)
    print(f"{args.model}: stages")
    print(freeze_summary(model).to_text() + "\n")
    rows = [
        BatchNormRow.of(layer, behaviour).cells()
        for layer, behaviour in fit_behaviours(reading)
    ]
    print(f"{args.model}: {len(rows)} BatchNormalization layers")
    if rows:
        print("\n".join(format_table(COLUMNS, rows)))
    switched_off = switched_off_layers(reading)
    if switched_off:
        print(
            "\nfit() keeps these layers in inference mode, because a call "
            "was recorded with training=False or training=None (Keras "
            "3.16): " + ", ".join(layer.name for layer in switched_off)
        )
    spread = plain_call_pairs(reading)
    if spread:
        print(
            "\nA call without training (model(x), an exported model) runs "
            "these layers in training mode, because a layer before them "
            "defaults to training=True (Keras <= 3.15): "
            + ", ".join(f"{bn.name} (after {c.name})" for bn, c in spread)
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


def _run_diagnose(args):
    from frozen_bn.diagnostics import diagnose

    if args.plot and not args.plot.endswith(".png"):
        raise UsageError(f"expected a .png plot path, got: {args.plot}")
    if args.plot:
        check_writable(args.plot)
    model = load_model_file(args.model)
    x, y = load_arrays(args)
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
                "--plot needs matplotlib: pip install matplotlib"
            ) from error
        save_figure_file(figure, args.plot)
        print(f"plot saved to {args.plot}")
    return EXIT_OK


COMMANDS = [
    Command(
        "inspect",
        "list the stages and every BatchNormalization layer, and how fit() "
        "will train them",
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
