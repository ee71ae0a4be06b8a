"""Keras BatchNormalization that behaves correctly during transfer learning."""

from frozen_bn.folding import FoldReport, fold_batch_norms
from frozen_bn.layers import BatchNormalization
from frozen_bn.patching import patch_model, unpatch_model
from frozen_bn.recalibration import recalibrate

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "FoldReport",
    "__version__",
    "fold_batch_norms",
    "patch_model",
    "recalibrate",
    "unpatch_model",
]
