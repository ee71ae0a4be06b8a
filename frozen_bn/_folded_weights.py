"""The arithmetic of folding a BatchNormalization into the layer before it.

In inference mode a BN layer is the per-channel affine map
`y = s * x + (beta - s * moving_mean)`, with
`s = gamma / sqrt(moving_variance + epsilon)`. Folded into the layer that
makes its input, it scales that layer's output channels (their kernel
slices and bias) by `s` and shifts the bias; the weights are computed in
float64.
"""

import keras
import numpy as np


def _scale_output_axis(kernel, scale):
    return kernel * scale


def _scale_transposed(kernel, scale):
    # Transposed convolutions store kernels as (*window, out, in).
    return kernel * scale[:, None]


def _scale_depthwise(kernel, scale):
    # Depthwise output channel `c * multiplier + m` comes from `[..., c, m]`.
    return kernel * np.reshape(scale, kernel.shape[-2:])


# The layers a BN can fold into: the name of the weight that produces their
# output channels, and how to scale it per channel. Exact classes only: a
# subclass may compute something else with the same weights.
_FOLDABLE = {
    keras.layers.Dense: ("kernel", _scale_output_axis),
    keras.layers.Conv1D: ("kernel", _scale_output_axis),
    keras.layers.Conv2D: ("kernel", _scale_output_axis),
    keras.layers.Conv3D: ("kernel", _scale_output_axis),
    keras.layers.SeparableConv1D: ("pointwise_kernel", _scale_output_axis),
    keras.layers.SeparableConv2D: ("pointwise_kernel", _scale_output_axis),
    keras.layers.DepthwiseConv1D: ("kernel", _scale_depthwise),
    keras.layers.DepthwiseConv2D: ("kernel", _scale_depthwise),
    keras.layers.Conv1DTranspose: ("kernel", _scale_transposed),
    keras.layers.Conv2DTranspose: ("kernel", _scale_transposed),
    keras.layers.Conv3DTranspose: ("kernel", _scale_transposed),
}


def can_fold_into(layer):
    """Whether a BN's affine map can be merged into `layer`'s weights.

    Only the exact layer classes whose weights this module knows how to
    scale qualify; whether a given BN may fold is decided by the caller
    (activation, layout, how often it is called).
    """
    return type(layer) in _FOLDABLE


def assign(clone, layer, bn):
    """Sets `clone`'s weights to those of `layer` followed by `bn`.

    Args:
        clone: A copy of `layer` with a bias, built.
        layer: A layer that `can_fold_into`, with or without a bias.
        bn: The BatchNormalization layer called on `layer`'s output.
    """
    kernel_name, scale_kernel = _FOLDABLE[type(layer)]
    values = {v.name: _float64(v) for v in layer.weights}
    scale, shift = _batch_norm_affine(bn)
    values[kernel_name] = scale_kernel(values[kernel_name], scale)
    values["bias"] = values.get("bias", 0.0) * scale + shift
    for variable in clone.weights:
        variable.assign(values[variable.name].astype(variable.dtype))


def _batch_norm_affine(bn):
    """`(scale, shift)` of `bn` in inference mode, in float64."""
    gamma = _float64(bn.gamma) if bn.scale else 1.0
    beta = _float64(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(_float64(bn.moving_variance) + bn.epsilon)
    return scale, beta - scale * _float64(bn.moving_mean)


def _float64(variable):
    return keras.ops.convert_to_numpy(variable).astype("float64")
