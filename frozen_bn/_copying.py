"""Copies of models: rebuilt from their config, then given the original's
weights and `trainable` flags.

A model's config holds its layers' classes and constructor arguments; the
weights and `trainable` flags are carried over once the copy is built. The
same step serves `patch_model`'s copies (Keras 3 and tf_keras) and
`fold_batch_norms`, whose graph differs from the original's but whose layers
copied whole come with their sublayers.
"""

import contextlib

import keras

from frozen_bn import _walk


def copy_keras_model(model):
    """An independent copy of the Keras 3 `model`: same class, weights, flags.

    The copy is made as Keras saves and loads a model, from its config (less
    its compile config), so that a model that builds its layers in code,
    such as a keras-hub backbone or task, comes back as its own class.
    """
    return _copy(
        model,
        _rebuild_keras_model,
        "Keras copies a model by building it again from its config, which "
        "takes a Functional or Sequential model, or another model whose "
        "`get_config()` holds every constructor argument. Pass "
        "`inplace=True` to patch the model itself.",
    )


def copy_tf_keras_model(model):
    """An independent copy of the tf_keras `model`, weights and flags too.

    Every layer keeps its class, nested models included.
    """
    return _copy(
        model,
        _clone_tf_keras_model,
        "tf_keras can only clone Functional and Sequential models.",
    )


def copy_state(original, copy):
    """Gives `copy` the weights and `trainable` flags of `original`.

    The flags of the layers inside are copied too when `copy` holds the
    same layers (see `_walk.paired_layers`); otherwise they stay as the
    config made them.

    Args:
        original: A layer or model.
        copy: A layer or model rebuilt from `original`'s config, and built.

    Returns:
        Whether `copy` holds the same layers as `original`.
    """
    copy.set_weights(original.get_weights())
    pairs = _walk.paired_layers(original, copy)
    set_trainable(
        (layer_copy, layer.trainable)
        for layer, layer_copy in pairs or [(original, copy)]
    )
    return pairs is not None


def set_trainable(flags):
    """Sets the `trainable` flag of each layer.

    Args:
        flags: `(layer, trainable)` pairs, parents before their children: a
            layer's `trainable` setter passes the flag on to its sublayers,
            so a parent set after a child would overwrite the child's flag.
    """
    for layer, trainable in flags:
        if layer.trainable != trainable:
            layer.trainable = trainable


def input_copies(model):
    """New `keras.Input` tensors like `model`'s: shape, dtype and name."""
    return [
        keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name)
        for x in model.inputs
    ]


def _copy(model, rebuild, how):
    try:
        copy = rebuild(model)
        alike = copy_state(model, copy)
    except Exception as error:  # Keras raises many types here.
        raise ValueError(
            f"Cannot copy `model` of type {type(model).__name__}: {how} "
            f"Keras said: {error}"
        ) from error
    if not alike:
        raise ValueError(
            f"Cannot copy `model` of type {type(model).__name__}: {how} "
            "Its copy does not hold the same layers."
        )
    return copy


def _rebuild_keras_model(model):
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    # On TensorFlow a model remembers the tf.distribute strategy it was made
    # under (the default one if none); its copy's variables must be too.
    strategy = getattr(model, "distribute_strategy", None)
    scope = (
        strategy.scope() if strategy is not None else contextlib.nullcontext()
    )
    with scope:
        return keras.saving.deserialize_keras_object(config, safe_mode=False)


def _clone_tf_keras_model(model):
    import tf_keras

    def clone_layer(layer):
        if isinstance(layer, tf_keras.Model):
            # tf_keras clones a nested model from its config, which turns
            # stock V2 layers into V1 ones in graph mode.
            return _clone_tf_keras_model(layer)
        return layer.__class__.from_config(layer.get_config())

    return tf_keras.models.clone_model(model, clone_function=clone_layer)
