"""`frozen-bn patch`, `unpatch` and `fold`: model file in, model file out."""

from frozen_bn.cli._command import EXIT_OK, Command, UsageError
from frozen_bn.cli._files import (
    check_model_output,
    load_model_file,
    save_model_file,
)


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

    check_model_output(args.output)
    model = load_model_file(args.input)
    freeze = FREEZE_CHOICES[args.freeze_moving_stats]
    patched = patch_model(model, freeze_moving_stats=freeze, inplace=True)
    save_model_file(patched, args.output, source=args.input)
    print(f"patched {args.input} -> {args.output}")
    return EXIT_OK


def _run_unpatch(args):
    from frozen_bn.patching import unpatch_model

    check_model_output(args.output)
    model = load_model_file(args.input)
    save_model_file(
        unpatch_model(model, inplace=True), args.output, source=args.input
    )
    print(f"unpatched {args.input} -> {args.output}")
    return EXIT_OK


def _run_fold(args):
    from frozen_bn.folding import fold_batch_norms

    check_model_output(args.output)
    model = load_model_file(args.input)
    try:
        folded, report = fold_batch_norms(model)
    except ValueError as error:
        raise UsageError(f"cannot fold {args.input}: {error}") from error
    save_model_file(folded, args.output, source=args.input)
    print(report.to_text())
    print(f"folded {args.input} -> {args.output}")
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
]
