"""Batch moments of a BatchNormalization layer's inputs.

Two functions, each given a layer, the inputs of one call and their mask:
- `moments` returns the count, mean and population variance of the inputs
  over every axis but the layer's feature axes (masked positions do not
  count);
- `normalize` also normalizes the inputs with those moments, as the layer
  does in training mode, and returns the outputs and the moments. It never
  reads or writes the layer's moving statistics.

The mean and variance are shaped like the layer's moving mean; the count is
a scalar, or shaped like the mean when there is a mask.

`for_model(model)` picks the implementation: `keras.ops` for Keras 3 on
JAX; TensorFlow ops for Keras 3 on TensorFlow and for tf_keras, whose
graph-mode tensors `keras.ops` cannot take; torch's batch norm kernel for
Keras 3 on torch. The variance is always computed around the mean, which
stays accurate where the mean is large against the spread (`keras.ops.moments`
on torch subtracts the squared mean from the mean square: off by more than
the variance itself for inputs around 100 with a spread of 0.01).

Where a backend's fused batch norm kernel applies (one feature axis, no
mask; on TensorFlow, 4-D and 5-D inputs, for `normalize` only), one kernel
measures and normalizes, where separate ops take about 1.6 (TensorFlow) and
2 (torch) times as long on a CPU.
"""

import math

import keras

from frozen_bn._runtime import runs_on_tensorflow

# TensorFlow's fused kernel raises smaller epsilons to this value.
_FUSED_MIN_EPSILON = 1.001e-5


def for_model(model):
    """The `(moments, normalize)` pair for the layers of `model`."""
    if runs_on_tensorflow(model):
        return _tf_moments, _tf_normalize
    if keras.backend.backend() == "torch":
        return _torch_moments, _torch_normalize
    return _keras_moments, _keras_normalize


def _feature_axes(layer, rank):
    axes = layer.axis if isinstance(layer.axis, list | tuple) else [layer.axis]
    return sorted(axis % rank for axis in axes)


def _reduction_axes(layer, rank):
    features = _feature_axes(layer, rank)
    return [axis for axis in range(rank) if axis not in features]


def _keras_moments(layer, inputs, mask):
    ops = keras.ops
    inputs = ops.cast(
        inputs, keras.backend.result_type(inputs.dtype, "float32")
    )
    axes = _reduction_axes(layer, len(inputs.shape))
    if mask is None:
        mean = ops.mean(inputs, axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axes)
        # Static shapes on JAX and torch: no op (`ops.size` is one on torch).
        count = math.prod(inputs.shape) // math.prod(variance.shape)
        return count, ops.squeeze(mean, axes), variance
    weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)
    weights = ops.broadcast_to(weights, ops.shape(inputs))
    count = ops.sum(weights, axes, keepdims=True)
    safe = ops.maximum(count, 1.0)
    mean = ops.sum(weights * inputs, axes, keepdims=True) / safe
    variance = ops.sum(ops.square(inputs - mean) * weights, axes) / safe
    return ops.squeeze(count), ops.squeeze(mean), ops.squeeze(variance)


def _keras_normalize(layer, inputs, mask):
    ops = keras.ops
    count, mean, variance = _keras_moments(layer, inputs, mask)
    outputs = ops.batch_normalization(
        ops.cast(inputs, mean.dtype),
        mean,
        variance,
        axis=layer.axis,
        offset=_cast_or_none(layer.beta, mean.dtype),
        scale=_cast_or_none(layer.gamma, mean.dtype),
        epsilon=layer.epsilon,
    )
    return ops.cast(outputs, layer.compute_dtype), (count, mean, variance)


def _torch_moments(layer, inputs, mask):
    if not _torch_fusable(layer, inputs, mask):
        return _keras_moments(layer, inputs, mask)
    _, measured = _torch_fused(layer, inputs, affine=False)
    return measured


def _torch_normalize(layer, inputs, mask):
    if not _torch_fusable(layer, inputs, mask):
        return _keras_normalize(layer, inputs, mask)
    outputs, measured = _torch_fused(layer, inputs, affine=True)
    return keras.ops.cast(outputs, layer.compute_dtype), measured


def _torch_fusable(layer, inputs, mask):
    """Whether torch's batch norm kernel can measure `inputs`."""
    features = _feature_axes(layer, inputs.ndim)
    # One feature axis, and two values per feature at least.
    return (
        mask is None
        and len(features) == 1
        and inputs.ndim >= 2
        and inputs.numel() >= 2 * inputs.shape[features[0]]
    )


def _torch_fused(layer, inputs, *, affine):
    """Torch's kernel in training mode: the outputs (float32) and moments.

    Args:
        affine: Whether the outputs are scaled and shifted by the layer's
            gamma and beta (else only the moments are of use).
    """
    import torch

    [axis] = _feature_axes(layer, inputs.ndim)
    size = inputs.shape[axis]
    count = inputs.numel() // size
    inputs = keras.ops.cast(
        inputs, keras.backend.result_type(inputs.dtype, "float32")
    )
    # With momentum 1, the kernel writes the batch's mean and unbiased
    # variance into these "running" statistics.
    mean, variance = (
        torch.zeros(size, dtype=inputs.dtype, device=inputs.device)
        for _ in range(2)
    )
    outputs = torch.nn.functional.batch_norm(
        torch.movedim(inputs, axis, 1),  # (batch, features, ...)
        mean,
        variance,
        weight=_cast_or_none(layer.gamma, inputs.dtype) if affine else None,
        bias=_cast_or_none(layer.beta, inputs.dtype) if affine else None,
        training=True,
        momentum=1.0,
        eps=layer.epsilon,
    )
    variance *= (count - 1) / count  # The population's.
    shape = layer.moving_mean.shape
    return torch.movedim(outputs, 1, axis), (
        count,
        mean.reshape(shape),
        variance.reshape(shape),
    )


def _cast_or_none(weight, dtype):
    return None if weight is None else keras.ops.cast(weight, dtype)


def _tf_moments(layer, inputs, mask):
    import tensorflow as tf

    inputs = tf.cast(inputs, tf.float32)
    axes = _reduction_axes(layer, len(inputs.shape))
    if mask is None:
        mean, variance = tf.nn.moments(inputs, axes, keepdims=True)
        return tf.size(inputs) // math.prod(mean.shape), mean, variance
    weights = tf.cast(tf.expand_dims(mask, -1), tf.float32)
    weights = tf.broadcast_to(weights, tf.shape(inputs))
    count = tf.reduce_sum(weights, axes, keepdims=True)
    mean, variance = tf.nn.weighted_moments(
        inputs, axes, weights, keepdims=True
    )
    return count, mean, variance


def _tf_normalize(layer, inputs, mask):
    import tensorflow as tf

    data_format = _fused_data_format(layer, inputs, mask)
    if data_format is None:
        count, mean, variance = _tf_moments(layer, inputs, mask)
        outputs = tf.nn.batch_normalization(
            tf.cast(inputs, tf.float32),
            mean,
            variance,
            _tf_weight(layer.beta, tf.shape(mean), 0.0),
            _tf_weight(layer.gamma, tf.shape(mean), 1.0),
            layer.epsilon,
        )
    else:
        features = inputs.shape[data_format.index("C")]
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, tf.float32),
            _tf_weight(layer.gamma, [features], 1.0),
            _tf_weight(layer.beta, [features], 0.0),
            epsilon=layer.epsilon,
            data_format=data_format,
            is_training=True,
        )
        count = tf.size(inputs) // features
        # The kernel returns the unbiased variance: make it the population's.
        variance *= tf.cast(count - 1, tf.float32) / tf.cast(count, tf.float32)
    return tf.cast(outputs, layer.compute_dtype), (count, mean, variance)


def _fused_data_format(layer, inputs, mask):
    """The fused kernel's layout for these inputs, or None if it can't."""
    rank = len(inputs.shape)
    features = _feature_axes(layer, rank)
    if mask is not None or len(features) != 1:
        return None
    if layer.epsilon < _FUSED_MIN_EPSILON:
        return None
    layouts = {
        (4, 3): "NHWC",
        (4, 1): "NCHW",
        (5, 4): "NDHWC",
        (5, 1): "NCDHW",
    }
    return layouts.get((rank, features[0]))


def _tf_weight(weight, shape, default):
    """`weight` as float32 of `shape`; `default` everywhere if it is None."""
    import tensorflow as tf

    if weight is None:
        return tf.fill(shape, default)
    return tf.reshape(tf.cast(weight, tf.float32), shape)
