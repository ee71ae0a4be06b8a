"""One of the two TensorFlow processes of the multi-worker-tf suite.

Run by `tests/multi_worker.run_workers` as
`python -m tests.multi_worker_tf.worker INDEX OUT_DIR`, with `TF_CONFIG`
naming both workers on 127.0.0.1. The two processes form one
`tf.distribute.MultiWorkerMirroredStrategy` with a replica on each.

Keras 3's `fit()` does not run under that strategy (keras-team/keras#20585):
the worker records its error, and trains Keras 3 models with a custom loop
instead, the `strategy.run` training step that the TensorFlow guides
write; tf_keras's `fit()` runs, and trains a tf_keras model.
"""

import collections
import sys

import numpy as np
import tensorflow as tf

STRATEGY = None  # made first thing in `main`, before any other TF op


def distributed(dataset_of):
    """Each worker's own batches of 8, one per replica, as `fit()` sees."""

    def dataset(context):
        return dataset_of(context.input_pipeline_id)

    return STRATEGY.distribute_datasets_from_function(dataset)


def collective_ops(layer, x):
    """How many collective ops a training-mode call of `layer` traces."""
    batches = distributed(
        lambda _: tf.data.Dataset.from_tensor_slices(x).batch(8)
    )
    batch = next(iter(batches))
    step = tf.function(
        lambda b: STRATEGY.run(lambda xs: layer(xs, training=True), (b,))
    )
    graph = step.get_concrete_function(batch).graph
    counts = collections.Counter(op.type for op in graph.get_operations())
    return sum(n for kind, n in counts.items() if "Collective" in kind)


def train(model, x, y, epochs, on_step=None):
    """Trains `model` on each worker's `(x, y)` with `strategy.run` steps."""
    import keras

    with STRATEGY.scope():
        optimizer = keras.optimizers.SGD(1e-2, momentum=0.9)
        optimizer.build(model.trainable_variables)
        loss = keras.losses.SparseCategoricalCrossentropy(reduction="sum")
    global_batch = 8 * STRATEGY.num_replicas_in_sync

    def step(xs, ys):
        with tf.GradientTape() as tape:
            value = loss(ys, model(xs, training=True)) / global_batch
        variables = model.trainable_variables
        gradients = tape.gradient(value, variables)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))

    run = tf.function(lambda batch: STRATEGY.run(step, batch))
    batches = distributed(
        lambda _: tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    )
    for _ in range(epochs):
        for batch in batches:
            run(batch)
            if on_step is not None:
                on_step()


def tf_keras_fit(index, x, y, arrays):
    """tf_keras's `fit()`, which runs under the strategy: a conv/BN model,
    its BN frozen, then training (the statistics after every step) with
    `PreciseBN` measuring on this worker's shard."""
    import tf_keras

    import frozen_bn
    import frozen_bn.tf_keras  # noqa: F401 (patch_model's tf_keras classes)
    from tests import multi_worker

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    options = tf.data.Options()  # each worker reads its own shard
    policy = tf.data.experimental.AutoShardPolicy.OFF
    options.experimental_distribute.auto_shard_policy = policy
    dataset = dataset.with_options(options)
    steps = []

    class Record(tf_keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(multi_worker.values(statistics)[0].copy())

    for frozen in (True, False):
        tf_keras.utils.set_random_seed(0)
        with STRATEGY.scope():
            model = frozen_bn.patch_model(tf_keras_model())
            bn = model.get_layer("bn")
            bn.freeze_moving_stats = frozen
            model.compile(
                tf_keras.optimizers.SGD(1e-2),
                "sparse_categorical_crossentropy",
            )
        statistics = [bn.moving_mean, bn.moving_variance]
        name = "frozen" if frozen else "training"
        arrays.update(
            multi_worker.named(
                f"tf_keras_{name}_before",
                [v.numpy().copy() for v in statistics],
            )
        )
        callbacks = []
        if not frozen:
            # PreciseBN on this worker's shard leaves the union's statistics.
            precise = frozen_bn.tf_keras.PreciseBN(
                multi_worker.recalibrate_shard(index),
                batch_size=multi_worker.BATCH_SIZE,
                verbose=0,
            )
            callbacks = [Record(), precise]
        model.fit(
            dataset, epochs=2 if frozen else 1, verbose=0, callbacks=callbacks
        )
        arrays.update(
            multi_worker.named(
                f"tf_keras_{name}_after", [v.numpy() for v in statistics]
            )
        )
    arrays["tf_keras_training_steps"] = np.stack(steps)
    arrays.update(multi_worker.named("tf_keras_weights", model.get_weights()))


def tf_keras_model():
    """A conv/BN/pooling/softmax tf_keras model on 8x8 images."""
    import tf_keras

    inputs = tf_keras.Input((8, 8, 3))
    h = tf_keras.layers.Conv2D(4, 3, padding="same")(inputs)
    h = tf_keras.layers.BatchNormalization(name="bn")(h)
    h = tf_keras.layers.GlobalAveragePooling2D()(h)
    outputs = tf_keras.layers.Dense(3, activation="softmax")(h)
    return tf_keras.Model(inputs, outputs)


def main(index, out_dir):
    global STRATEGY
    STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    import frozen_bn
    from frozen_bn import _walk
    from tests import multi_worker
    from tests.multi_device_models import transfer_model

    arrays = {}
    record = {
        "replicas": STRATEGY.num_replicas_in_sync,
        "local_replicas": len(STRATEGY.extended.worker_devices),
    }
    multi_worker.check_recalibrate(STRATEGY.scope, index, arrays, record)
    multi_worker.check_diagnose(STRATEGY.scope, index, record)

    # Training with a frozen base: its statistics stay bitwise the same.
    keras.utils.set_random_seed(0)
    x, y = multi_worker.fit_shard(index)
    with STRATEGY.scope():
        model, _ = transfer_model()
        model = frozen_bn.patch_model(model)
    base = model.get_layer("base")
    base.trainable = False
    arrays.update(multi_worker.statistics_arrays("frozen_before", base))
    arrays["head_before"] = model.layers[-1].kernel.numpy()
    train(model, x, y, epochs=2)
    arrays.update(multi_worker.statistics_arrays("frozen_after", base))
    arrays["head_after"] = model.layers[-1].kernel.numpy()

    # BN layers that train: their statistics after every step.
    keras.utils.set_random_seed(0)
    with STRATEGY.scope():
        model, _ = transfer_model()
        model = frozen_bn.patch_model(model)
    base = model.get_layer("base")
    for layer in _walk.batch_norm_layers(base):
        layer.freeze_moving_stats = False
    arrays["training_before"] = multi_worker.flat_statistics(base)
    steps = []
    train(
        model,
        x,
        y,
        epochs=1,
        on_step=lambda: steps.append(multi_worker.flat_statistics(base)),
    )
    arrays["training_steps"] = np.stack(steps)

    tf_keras_fit(index, x, y, arrays)

    raw = multi_worker.raw_shard(index)
    counts = {}
    for name, config in {
        "frozen": {"trainable": False},
        "freeze_moving_stats": {"freeze_moving_stats": True},
        "training": {},
    }.items():
        trainable = config.pop("trainable", True)
        with STRATEGY.scope():
            layer = frozen_bn.BatchNormalization(**config)
            layer.build((None, 4))
        layer.trainable = trainable
        counts[name] = collective_ops(layer, raw)
    record["collectives"] = counts

    # Last: Keras 3's fit() under this strategy (fails upstream).
    with STRATEGY.scope():
        model, _ = transfer_model()
        model.compile("sgd", "sparse_categorical_crossentropy")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    try:
        model.fit(dataset, verbose=0)
        record["keras_fit"] = "ran"
    except Exception as error:  # noqa: BLE001 (recorded for the test)
        message = str(error).splitlines()[0]
        record["keras_fit"] = f"{type(error).__name__}: {message}"
    multi_worker.save(out_dir, index, arrays, record)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
