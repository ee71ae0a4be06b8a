"""The demo's models: the pretrained base, its cache, and fine-tuning.

Every function takes the Keras module to build with (`keras_module`:
`keras`, or `tf_keras` for the TF1 graph-mode run), so that both Kerases
build the same architecture and share the cached pretrained weights.
"""

import os

import numpy as np

from frozen_bn._atomic import replacing
from frozen_bn.demo.data import load_data
from frozen_bn.demo.protocol import ARCHITECTURE, FINE_TUNED_BLOCK, IMAGE_SIZE


def build_base(keras_module, bn_momentum):
    """The pretrained architecture, built with `keras_module`.

    Three blocks of two Conv+BN+ReLU layers (16, 32, 64 filters), with max
    pooling between them.
    """
    layers = keras_module.layers
    inputs = keras_module.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    x = inputs
    for block, filters in enumerate((16, 32, 64), start=1):
        for conv in (1, 2):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=name
            )(x)
            x = layers.BatchNormalization(
                momentum=bn_momentum, name=f"{name}_bn"
            )(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        if block < 3:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return keras_module.Model(inputs, x, name="base")


def load_pretrained_base(keras_module, weights, bn_momentum):
    """The pretrained base as a user gets it: from its config, then weights.

    That is what `load_model` and `keras.applications` do. In TF1 graph
    mode it matters: tf_keras then gives the V1 BatchNormalization class
    to a model built from a config (and to its applications), while its
    public `tf_keras.layers.BatchNormalization` is the V2 class.
    """
    config = build_base(keras_module, bn_momentum).get_config()
    base = keras_module.Model.from_config(config)
    base.set_weights(weights)
    return base


def with_head(keras_module, base, units, activation, training=None):
    """A classifier: `base` called with `training`, pooling, a dense top."""
    inputs = keras_module.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    # Keras 3.16 records an explicit `training=None` too, and then runs
    # `base` in inference mode even under fit(): pass it only when set.
    arguments = {} if training is None else {"training": training}
    x = base(inputs, **arguments)
    x = keras_module.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras_module.layers.Dense(
        units, activation=activation, name="top"
    )(x)
    return keras_module.Model(inputs, outputs, name="classifier")


def default_cache_dir():
    """`$XDG_CACHE_HOME/frozen_bn`, or `~/.cache/frozen_bn`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return os.path.join(root, "frozen_bn")


def pretrained_weights(seed, protocol, cache_dir, retrain=False):
    """The base's pretrained weights for `seed`, from the cache or trained.

    Pretraining uses Keras 3 (the current backend); the weights are saved
    as a `.npz` in `get_weights()` order, which tf_keras shares.

    Args:
        seed: The random seed of the pretraining.
        protocol: The `Protocol` (its epochs, batch size, BN momentum).
        cache_dir: The directory of the cached weights.
        retrain: Train even if the cache holds the weights.

    Returns:
        A pair `(weights, path)`: a list of numpy arrays and the cache file.
    """
    name = (
        f"pretrained_{ARCHITECTURE}_bn{protocol.bn_momentum:g}"
        f"_e{protocol.pretrain_epochs}_seed{seed}.npz"
    )
    path = os.path.join(cache_dir, name)
    if os.path.exists(path) and not retrain:
        return load_weights(path), path
    import keras

    keras.utils.set_random_seed(seed)
    x, y = load_data(seed)["source"]
    base = build_base(keras, protocol.bn_momentum)
    model = with_head(keras, base, 10, "softmax")
    model.compile(
        keras.optimizers.Adam(1e-3),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x,
        y,
        batch_size=protocol.batch_size,
        epochs=protocol.pretrain_epochs,
        verbose=0,
    )
    weights = base.get_weights()
    os.makedirs(cache_dir, exist_ok=True)
    with replacing(path) as temporary:  # An interrupted run leaves no cache.
        np.savez(temporary, **{f"w{i}": w for i, w in enumerate(weights)})
    return weights, path


def load_weights(path):
    """The list of arrays that `pretrained_weights` saved at `path`."""
    with np.load(path) as stored:
        return [stored[f"w{i}"] for i in range(len(stored.files))]


def fine_tune(keras_module, weights, data, protocol, setting, implementation):
    """Builds the target model on the pretrained base and trains it.

    The two stages of the 2018 experiment: a new top on the frozen base,
    then the base's last block too.

    Args:
        keras_module: `keras`, or `tf_keras` in TF1 graph mode.
        weights: The pretrained base's weights.
        data: The dict of `data.load_data`.
        protocol: The `Protocol`.
        setting: The `Setting`: how the base is called, and whether this
            is TF1 graph mode.
        implementation: `"stock"`, `"patched"` (the model goes through
            `frozen_bn.patch_model` before training, as a user would do
            it), `"recalibrated"` (patched, and the base's statistics
            re-estimated on the target training images first) or
            `"precise"` (patched, and stage 2 fitted with the `PreciseBN`
            callback on the target training images).

    Returns:
        The trained model.
    """
    base = load_pretrained_base(keras_module, weights, protocol.bn_momentum)
    base.trainable = False
    model = with_head(
        keras_module, base, 1, "sigmoid", training=setting.base_training
    )
    if implementation != "stock":
        # Not `import frozen_bn`: under `frozen-bn demo` the package
        # imports nothing itself (see `frozen_bn/__init__.py`).
        from frozen_bn.callbacks import PreciseBN
        from frozen_bn.freezing import freeze
        from frozen_bn.patching import patch_model
        from frozen_bn.recalibration import recalibrate

        model = patch_model(model)
        base = model.get_layer("base")
        if implementation == "recalibrated":
            recalibrate(
                base,
                data["target_train"][0],
                batch_size=protocol.batch_size,
                verbose=0,
            )
    # tf_keras's TF1 graph mode needs its legacy optimizers.
    optimizers = keras_module.optimizers
    if setting.graph_mode:
        optimizers = optimizers.legacy
    x, y = data["target_train"]
    fit = dict(x=x, y=y, batch_size=protocol.batch_size, verbose=0)
    model.compile(
        optimizers.RMSprop(learning_rate=protocol.stage1_learning_rate),
        "binary_crossentropy",
    )
    model.fit(epochs=protocol.stage1_epochs, **fit)
    if implementation == "stock":
        # What a user of the stock layer writes.
        base.trainable = True
        for layer in base.layers:
            layer.trainable = layer.name.startswith(FINE_TUNED_BLOCK)
    else:
        freeze(
            base,
            up_to=last_frozen_index(base),
            batch_norm=stage2_batch_norm(setting),
            inplace=True,
        )
    model.compile(
        optimizers.SGD(
            learning_rate=protocol.stage2_learning_rate, momentum=0.9
        ),
        "binary_crossentropy",
    )
    callbacks = []
    if implementation == "precise":
        callbacks.append(PreciseBN(x, batch_size=protocol.batch_size))
    model.fit(epochs=protocol.stage2_epochs, callbacks=callbacks, **fit)
    return model


def last_frozen_index(base):
    """The index in `base.layers` of the last layer stage 2 keeps frozen."""
    first = next(
        index
        for index, layer in enumerate(base.layers)
        if layer.name.startswith(FINE_TUNED_BLOCK)
    )
    return first - 1


def stage2_batch_norm(setting):
    """The `frozen_bn.freeze` policy for the BN layers stage 2 fine-tunes.

    The one that keeps the flags `patch_model` gave them, so that the
    numbers are those of the hand-written stage 2 of the stock run: where
    the base is called with `training=False`, patching fixed the statistics
    of every BN layer of the base (`"freeze_statistics"`); elsewhere the
    fine-tuned block's BN layers learn their statistics (`"train"`).
    """
    return "freeze_statistics" if setting.base_training is False else "train"
