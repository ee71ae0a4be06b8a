"""`frozen-bn demo`: stock BatchNormalization vs frozen_bn's, on real data.

The demo repeats the 2018 "Keras BN layer is broken" experiment (Datumbox).
A small VGG-style network is pretrained on scikit-learn's digits (the
source domain: 10 classes, unshifted images), then fine-tuned on a new task
whose images have other statistics (the target domain: "is the digit >= 5?"
on low-contrast images, `x' = 0.4 x + 0.5`). Fine-tuning follows the 2018
experiment's two stages: a new top trained with RMSprop on the frozen base,
then the base's last block fine-tuned too, with SGD and momentum 0.9. Each
result is evaluated on held-out target images three ways: as Keras does on
its own (`predict()`, the "dynamic" learning phase), in inference mode and
in training mode. A model whose frozen layers really are frozen gives the
same answer all three ways.

The experiment runs in three settings, each with the stock
BatchNormalization and with frozen_bn's:

1. tf_keras in TF1 graph mode, the 2018 experiment's setting, in a
   subprocess so that graph mode is set before anything else.
2. Keras 3 with the transfer-learning guide's pattern: the base called with
   `training=False`, later unfrozen with `base.trainable = True`.
3. Keras 3 with `trainable=False` alone, where the stock layer is right.

With the guide's pattern, a third run re-estimates the frozen base's
statistics on the target training images first (`frozen_bn.recalibrate`,
AdaBN). With `trainable=False` alone, where the fine-tuned block's BN
layers learn their statistics, a third run fits stage 2 with the
`frozen_bn.callbacks.PreciseBN` callback, which recomputes them for the
weights they end with.

The modules: `protocol` (schedule, settings), `data`, `models` (the base,
its weight cache, fine-tuning), `runs` (one run, its evaluation, the loop
over implementations and seeds), `worker` (the graph-mode subprocess),
`report` (the table) and `figure`. The pretrained weights are cached (a
`.npz` of the weights in the order both Kerases list them) and re-used.
Run it with `frozen-bn demo` or `python -m frozen_bn demo`.
"""

import importlib.util
import os
import time

from frozen_bn.demo import figure, worker
from frozen_bn.demo.models import default_cache_dir, pretrained_weights
from frozen_bn.demo.protocol import FULL, QUICK, SETTINGS
from frozen_bn.demo.report import format_report
from frozen_bn.demo.runs import run_setting
from frozen_bn.demo.worker import graph_mode_available

__all__ = [
    "default_cache_dir",
    "graph_mode_available",
    "missing_requirements",
    "run_demo",
    "show",
]


def missing_requirements():
    """The packages the demo needs that are not installed (pip names).

    matplotlib is not one: without it the demo prints its table only.
    """
    if importlib.util.find_spec("sklearn") is None:
        return ["scikit-learn"]
    return []


def run_demo(
    *,
    quick=False,
    seeds=(0,),
    retrain=False,
    out=None,
    cache_dir=None,
    graph_mode=True,
):
    """Runs the experiment, prints the table and draws the figure.

    Args:
        quick: Shorter fine-tuning (`QUICK` instead of `FULL`).
        seeds: The seeds to run; results are averaged over them.
        retrain: Pretrain again even if cached weights exist.
        out: Path of the figure (PNG); defaults to `demo.png` in
            `cache_dir`. Without matplotlib no figure is drawn.
        cache_dir: Where pretrained weights are cached; defaults to
            `default_cache_dir()`.
        graph_mode: Whether to run the tf_keras TF1 graph-mode setting
            (needs tensorflow and tf_keras).

    Returns:
        A list of result dicts (`runs.run_one`), one per setting,
        implementation and seed, with the metrics per evaluation mode.
    """
    import keras

    protocol = QUICK if quick else FULL
    cache_dir = cache_dir or default_cache_dir()
    out = out or os.path.join(cache_dir, "demo.png")
    start = time.perf_counter()
    print(
        f"frozen-bn demo ({'quick' if quick else 'full'}), Keras "
        f"{keras.__version__} on {keras.backend.backend()}, seeds "
        f"{list(seeds)}\n{protocol.describe()}\n",
        flush=True,
    )
    weights, paths = {}, []
    for seed in seeds:
        weights[seed], path = pretrained_weights(
            seed, protocol, cache_dir, retrain
        )
        paths.append(path)
        print(f"pretrained base (seed {seed}): {path}", flush=True)
    # The graph-mode subprocess runs while this process runs Keras 3.
    process = graph_mode and worker.start(seeds, paths, protocol)
    results = []
    for setting in SETTINGS:
        if setting.graph_mode:
            continue
        for implementation, runs in run_setting(
            keras, setting, weights, protocol
        ):
            results += runs
            print(
                f"fine-tuned: {setting.name}, {implementation} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if process:
        results = worker.collect(process) + results
    print()
    show(results, out)
    print(f"total time: {time.perf_counter() - start:.0f} s")
    return results


def show(results, out):
    """Prints the table of `results` and draws their figure at `out`.

    Without matplotlib, prints that the figure needs it instead.
    """
    print(format_report(results))
    if figure.draw_figure(results, out):
        print(f"\nfigure: {out}")
    else:
        print(f"\nno figure: {figure.NEEDS}")
