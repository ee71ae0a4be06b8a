"""`frozen-bn export`: model file in, serving artifact out."""

import argparse

from frozen_bn._export_formats import ALL_FORMATS
from frozen_bn.cli._command import EXIT_OK, Command, UsageError
from frozen_bn.cli._files import load_arrays, load_model_file


def _add_arguments(parser):
    parser.add_argument(
        "model", metavar="MODEL", help="model file (.keras or .h5)"
    )
    parser.add_argument(
        "output",
        metavar="OUT",
        help="where to write the artifact (a directory for tf_saved_model)",
    )
    parser.add_argument(
        "--format",
        default="tf_saved_model",
        choices=ALL_FORMATS,
        help="default: tf_saved_model; which ones the Keras backend can "
        "write is checked",
    )
    parser.add_argument(
        "--check",
        metavar="DATA.npz",
        help="run the artifact in its own runtime on the inputs in this .npz "
        "file (array 'x', or its only array) and compare with predict",
    )


def _run(args):
    data = None
    if args.check is not None:
        npz = argparse.Namespace(data=args.check, inputs=None, labels=None)
        data, _ = load_arrays(npz)
    model = load_model_file(args.model)
    from frozen_bn.exporting import ExportMismatchError, export

    try:
        report = export(model, args.output, args.format, check_data=data)
    except (ValueError, TypeError, ImportError) as error:
        if isinstance(error, ExportMismatchError):
            raise UsageError(f"the artifact is wrong:\n{error}") from error
        raise UsageError(f"cannot export {args.model}: {error}") from error
    except OSError as error:  # `export` names `args.output` in it.
        raise UsageError(
            f"cannot write {args.output}: {error.strerror}"
        ) from error
    if report is not None:
        print(report.to_text())
    print(f"exported {args.model} -> {args.output} ({args.format})")
    return EXIT_OK


COMMAND = Command(
    "export",
    "export a saved model for serving, every layer in inference mode",
    _add_arguments,
    _run,
)
