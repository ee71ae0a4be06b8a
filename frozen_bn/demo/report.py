"""The demo's text report: a table per setting and what its numbers say.

Results are the `runs.run_one` dicts; with several seeds the table shows
each metric's mean over them, and the accuracy's standard deviation. Each
setting closes with whether its evaluation modes agree and what its
results show (`verdict.py`).
"""

import numpy as np

from frozen_bn._text import format_table
from frozen_bn.demo.protocol import (
    IMPLEMENTATIONS,
    MODE_LABELS,
    MODES,
    SETTINGS,
)
from frozen_bn.demo.verdict import agree, explanations

HEADER = (
    "implementation",
    "evaluation",
    "loss",
    "accuracy (%)",
    "ROC AUC",
    "positive rate",
)
NUMERIC = frozenset(range(2, len(HEADER)))
INDENT = "  "


def summarize(results, setting, implementation, mode, metric):
    """Mean and standard deviation of `metric` over seeds."""
    values = [
        r["modes"][mode][metric]
        for r in results
        if r["setting"] == setting and r["implementation"] == implementation
    ]
    return float(np.mean(values)), float(np.std(values))


def gap(results, setting, implementation):
    """Training- minus inference-mode accuracy, in points (seed mean)."""
    train = summarize(results, setting, implementation, "training", "accuracy")
    test = summarize(results, setting, implementation, "inference", "accuracy")
    return 100 * (train[0] - test[0])


def groups(results):
    """`(setting, [implementations])` in display order, for those run."""
    present = {(r["setting"], r["implementation"]) for r in results}
    for setting in SETTINGS:
        names = [n for n in IMPLEMENTATIONS if (setting.name, n) in present]
        if names:
            yield setting, names


def format_report(results):
    """The table of all results and a conclusion per setting, as text."""
    lines = []
    spread = len({r["seed"] for r in results}) > 1
    behaviour = _what_fit_does_with_training_false()
    for setting, names in groups(results):
        lines += ["", setting.title]
        if setting.base_training is False:
            lines.append(f"{INDENT}({_describe(behaviour)})")
        rows = [
            _row(results, setting.name, name, mode, spread)
            for name in names
            for mode in MODES
        ]
        lines += [INDENT + line for line in format_table(HEADER, rows, NUMERIC)]
        for name in names:
            (bn_class,) = {
                r["bn_class"]
                for r in results
                if (r["setting"], r["implementation"]) == (setting.name, name)
            }
            lines.append(
                f"{INDENT}BN class of {IMPLEMENTATIONS[name]}: {bn_class}"
            )
        lines.append(f"{INDENT}-> " + conclusion(results, setting, names))

        def accuracy(name, mode, setting=setting):
            mean = summarize(results, setting.name, name, mode, "accuracy")
            return 100 * mean[0]

        lines += [
            INDENT + line for line in explanations(setting, accuracy, behaviour)
        ]
    return "\n".join(lines).lstrip("\n")


def _row(results, setting, implementation, mode, spread):
    """A table row; the implementation is named on its first mode's row.
    With `spread`, the accuracy's standard deviation over seeds too."""

    def mean(metric):
        return summarize(results, setting, implementation, mode, metric)[0]

    accuracy, deviation = summarize(
        results, setting, implementation, mode, "accuracy"
    )
    first = mode == MODES[0]
    return (
        IMPLEMENTATIONS[implementation] if first else "",
        MODE_LABELS[mode],
        f"{mean('loss'):.3f}",
        f"{100 * accuracy:.1f}"
        + (f" ± {100 * deviation:4.1f}" if spread else ""),
        f"{mean('auc'):.3f}",
        f"{mean('positive_rate'):.2f}",
    )


def _what_fit_does_with_training_false():
    """`"overrides"`, `"keeps"` or `"leaks"`: see `verdict.explanations`."""
    from frozen_bn import _training_arg

    if not _training_arg.honours_recorded_training():
        return "overrides"
    return "leaks" if _training_arg.leaks_recorded_training() else "keeps"


def _describe(behaviour):
    import keras

    kept = {
        "overrides": "overrides the recorded training=False: the base trains",
        "keeps": "keeps the recorded training=False",
        "leaks": "keeps the recorded training=False, and passes it on to "
        "the layers after the base",
    }[behaviour]
    return f"Keras {keras.__version__}: the stock fit() {kept}"


def conclusion(results, setting, names):
    """One line: per implementation, do the three evaluation modes agree?"""
    parts = []
    for name in names:
        accuracies = [
            100 * summarize(results, setting.name, name, mode, "accuracy")[0]
            for mode in MODES
        ]
        points = gap(results, setting.name, name)
        verdict = "agree" if agree(points) else "DISAGREE"
        parts.append(
            f"{IMPLEMENTATIONS[name]}: "
            + " / ".join(f"{a:.1f}" for a in accuracies)
            + f"% (training - inference {points:+.1f} points: {verdict})"
        )
    return "accuracy Dynamic / inference / training: " + "; ".join(parts)
