"""What `frozen_bn.export`'s check finds: errors per output, and why."""

import dataclasses

import keras
import numpy as np

from frozen_bn import _training_arg


class ExportMismatchError(ValueError):
    """An exported artifact that disagrees with `model.predict`.

    Attributes:
        report: The `ExportReport` of the comparison.
    """

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class OutputError:
    """How far one output of an artifact is from `model.predict`.

    `predict_finite` is whether `model.predict` itself is finite: a NaN or
    an infinity there (NaN weights, inputs that overflow) is the model's,
    and no artifact agrees with it.
    """

    name: str
    max_abs_error: float
    mean_abs_error: float
    allowed: float
    predict_finite: bool = True

    @property
    def ok(self):
        return self.max_abs_error <= self.allowed


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """How an exported artifact, run in its own runtime, compares with
    `model.predict` on the same data.

    Attributes:
        filepath: The artifact.
        format: Its format.
        outputs: One `OutputError` per model output, in
            `keras.tree.flatten` order.
        tolerance: An output agrees when its largest absolute error is at
            most `tolerance * max(1, max(abs(expected)))`.
    """

    filepath: str
    format: str
    outputs: tuple
    tolerance: float

    @property
    def ok(self):
        """Whether every output agrees within the tolerance."""
        return all(output.ok for output in self.outputs)

    def to_dict(self):
        """The report as a JSON-ready dict."""
        return dataclasses.asdict(self) | {"ok": self.ok}

    def to_text(self):
        """The report as lines of text, one per output."""
        verdict = "agrees with" if self.ok else "DIFFERS from"
        lines = [f"{self.format} artifact {self.filepath} {verdict} predict:"]
        lines += [
            f"  {o.name}: max abs error {o.max_abs_error:.3g}, mean "
            f"{o.mean_abs_error:.3g} (allowed {o.allowed:.3g})"
            for o in self.outputs
        ]
        return "\n".join(lines)


def output_errors(model, expected, actual, tolerance):
    names = list(getattr(model, "output_names", None) or [])
    names += [f"output_{i}" for i in range(len(names), len(expected))]
    if len(actual) != len(expected):
        raise ValueError(
            f"The artifact has {len(actual)} outputs; the model has "
            f"{len(expected)}. Is it an export of this model?"
        )
    errors = []
    for name, want, got in zip(names, expected, actual, strict=False):
        difference = np.abs(np.asarray(got, "float64") - want)
        allowed = tolerance * max(1.0, float(np.max(np.abs(want))))
        errors.append(
            OutputError(
                name,
                float(difference.max()),
                float(difference.mean()),
                allowed,
                bool(np.isfinite(want).all()),
            )
        )
    return tuple(errors)


def mismatch_message(model, report):
    lines = [report.to_text()]
    non_finite = [o.name for o in report.outputs if not o.predict_finite]
    if non_finite:
        lines.append(
            f"`{model.name}` itself computes NaN or infinity on these inputs: "
            f"`model.predict` is not finite in {non_finite}. The model is to "
            "blame, not the export nor a layer's mode: look for NaN weights, "
            "or inputs so large that the model overflows."
        )
        return "\n".join(lines)
    pairs = _training_arg.plain_call_in_training_mode(model)
    if pairs:
        lines.append(
            f"In a call without `training`, Keras {keras.__version__} runs "
            "these BatchNormalization layers in training mode (batch "
            "statistics):"
        )
        lines += [
            f"  {bn.name} (after {culprit.name}, a {type(culprit).__name__} "
            "called in training mode by default)"
            for bn, culprit in pairs
        ]
        lines.append(
            "Export with `frozen_bn.export`, which calls the model with "
            "`training=False`."
        )
    else:
        lines.append(
            f"No BatchNormalization layer of `{model.name}` runs in training "
            f"mode in a call without `training` on Keras {keras.__version__}."
        )
    return "\n".join(lines)
