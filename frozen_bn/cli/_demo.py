"""`frozen-bn demo`: the 2018 experiment, stock BN vs frozen_bn."""

from frozen_bn.cli._command import EXIT_OK, Command, UsageError


def _add_arguments(parser):
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


def run(args):
    from frozen_bn import demo

    missing = demo.missing_requirements()
    if missing:
        raise UsageError(
            f"the demo needs {', '.join(missing)}: "
            f"pip install {' '.join(missing)}"
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


COMMAND = Command(
    "demo",
    'the 2018 "Keras BN layer is broken" experiment (Datumbox) on real '
    "data: stock BN vs frozen_bn",
    _add_arguments,
    run,
)
