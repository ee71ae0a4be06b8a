"""Keras BatchNormalization that behaves correctly during transfer learning."""

from frozen_bn.layers import BatchNormalization
from frozen_bn.patching import patch_model, unpatch_model
from frozen_bn.recalibration import recalibrate

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "__version__",
    "patch_model",
    "recalibrate",
    "unpatch_model",
]
