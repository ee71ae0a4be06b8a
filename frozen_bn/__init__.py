"""Keras BatchNormalization that behaves correctly during transfer learning."""

from frozen_bn.layers import BatchNormalization

__version__ = "0.1.0"

__all__ = ["BatchNormalization", "__version__"]
