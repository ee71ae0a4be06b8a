"""The demo's figure: accuracy per evaluation mode, as grouped bars.

Needs matplotlib (the `plot` extra); the demo runs without it and prints
only its table.
"""

import os

import numpy as np

from frozen_bn._atomic import save_figure
from frozen_bn.demo.protocol import IMPLEMENTATIONS, MODE_LABELS, MODES
from frozen_bn.demo.report import groups, summarize

NEEDS = "the figure needs matplotlib: pip install matplotlib"
SHORT_NAMES = {
    "tf_keras_graph": "tf_keras graph",
    "keras3_guide": "Keras 3 guide",
    "keras3_trainable": "Keras 3\ntrainable=False",
}


def draw_figure(results, path):
    """Grouped bars: accuracy per evaluation mode, per implementation.

    Args:
        results: The `runs.run_one` results.
        path: Where to save the figure, a PNG.

    Returns:
        Whether the figure was saved: `False` when matplotlib is not
        installed (`NEEDS` says so).
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    from matplotlib import pyplot

    bars = [
        (setting, name) for setting, names in groups(results) for name in names
    ]
    figure, axes = pyplot.subplots(figsize=(1.6 * len(bars) + 2, 4.5))
    width = 0.8 / len(MODES)
    positions = np.arange(len(bars))
    for index, mode in enumerate(MODES):
        stats = [
            summarize(results, s.name, n, mode, "accuracy") for s, n in bars
        ]
        axes.bar(
            positions + (index - 1) * width,
            [100 * mean for mean, _ in stats],
            width,
            yerr=[100 * spread for _, spread in stats],
            label=MODE_LABELS[mode],
        )
    axes.set_xticks(
        positions,
        [f"{SHORT_NAMES[s.name]}\n{IMPLEMENTATIONS[n]}" for s, n in bars],
        fontsize=8,
    )
    axes.set_ylabel("held-out accuracy (%)")
    axes.set_ylim(0, 100)
    axes.axhline(50, color="gray", linewidth=0.8, linestyle=":")
    axes.set_title("Fine-tuned digits model: accuracy by evaluation mode")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    save_figure(figure, path, dpi=120)
    pyplot.close(figure)
    return True
