"""Keras BatchNormalization that behaves correctly during transfer learning.

Importing the package imports every public name, and with them Keras:
that registers frozen_bn's layers, so that Keras can load saved models
holding them. The `frozen-bn` command is the exception (it imports this
package first, as any console script imports its package): there the
package imports nothing, argparse answers `--help` at once, and each
command imports what it needs (`frozen_bn.cli`).
"""

from frozen_bn import _tf_logs

__version__ = "0.2.0"

if not _tf_logs.started_from_command_line():
    # Before Keras imports TensorFlow: see `frozen_bn._tf_logs`.
    _tf_logs.obey_level()

    from frozen_bn import callbacks as callbacks  # as keras.callbacks
    from frozen_bn._freeze_summary import FreezeSummary, freeze_summary
    from frozen_bn.architecture import Stage, stages
    from frozen_bn.caching import cache_features
    from frozen_bn.diagnostics import DiagnosisReport, diagnose
    from frozen_bn.exporting import (
        ExportMismatchError,
        ExportReport,
        check_export,
        export,
    )
    from frozen_bn.folding import FoldReport, fold_batch_norms
    from frozen_bn.freezing import freeze, unfreeze
    from frozen_bn.layers import BatchNormalization
    from frozen_bn.patching import patch_model, unpatch_model
    from frozen_bn.recalibration import recalibrate
    from frozen_bn.splitting import cut_points, join, split_model

__all__ = [
    "BatchNormalization",
    "DiagnosisReport",
    "ExportMismatchError",
    "ExportReport",
    "FoldReport",
    "FreezeSummary",
    "Stage",
    "__version__",
    "cache_features",
    "check_export",
    "cut_points",
    "diagnose",
    "export",
    "fold_batch_norms",
    "freeze",
    "freeze_summary",
    "join",
    "patch_model",
    "recalibrate",
    "split_model",
    "stages",
    "unfreeze",
    "unpatch_model",
]
