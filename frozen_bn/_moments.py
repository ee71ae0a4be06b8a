"""Batch moments of a BatchNormalization layer's inputs.

Two functions, each given a layer, the inputs of one call and their mask:
- `moments` returns the count, mean and population variance of the inputs
  over every axis but the layer's feature axes, as `keras.ops.moments`
  defines them (masked positions do not count);
- `normalize` also normalizes the inputs with those moments, as the layer
  does in training mode, and returns the outputs and the moments. It never
  reads or writes the layer's moving statistics.

The mean and variance are shaped like the layer's moving mean; the count is
a scalar, or shaped like the mean when there is a mask.

`for_model(model)` picks the implementation: `keras.ops` for Keras 3 on JAX
and torch; TensorFlow ops for Keras 3 on TensorFlow and for tf_keras, whose
graph-mode tensors `keras.ops` cannot take. On TensorFlow, `normalize` uses
the fused batch norm kernel where it applies (4-D and 5-D inputs with one
feature axis, first or last): one kernel measures and normalizes, where
separate ops take about 1.6 times as long on a CPU.
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
        mean, variance = ops.moments(inputs, axes)
        return ops.size(inputs) // math.prod(mean.shape), mean, variance
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
