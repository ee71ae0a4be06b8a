"""One of the two JAX processes of the multi-worker-jax suite.

Run by `tests/multi_worker.run_workers` as
`python -m tests.multi_worker_jax.worker INDEX OUT_DIR`, with the
coordinator's address in `FROZEN_BN_COORDINATOR`. The two processes form
one JAX run (`jax.distributed.initialize`, one CPU device each, gloo
collectives) and train under `keras.distribution.DataParallel` over both.
"""

import os
import re
import sys

import jax

COLLECTIVE = re.compile(
    r"\b(all-reduce|all-gather|reduce-scatter|collective-permute|all-to-all)"
    r"(-start)?\("
)


def count_process_gathers():
    """Counts every cross-process gather JAX makes from now on.

    Both frozen_bn's gathers and JAX's own (`device_put` of host values to
    devices of several processes first checks that they are equal on every
    process) go through `multihost_utils.process_allgather`.
    """
    from jax.experimental import multihost_utils

    counter = {"calls": 0}
    original = multihost_utils.process_allgather

    def counted(*args, **kwargs):
        counter["calls"] += 1
        return original(*args, **kwargs)

    multihost_utils.process_allgather = counted
    return counter


def collectives_of_training_call(distribution, **bn_config):
    """Collectives in the compiled training-mode call of one BN layer on a
    batch sharded over both processes."""
    from jax.sharding import NamedSharding, PartitionSpec

    import frozen_bn
    from tests.multi_worker import raw_shard

    trainable = bn_config.pop("trainable", True)
    with distribution.scope():
        layer = frozen_bn.BatchNormalization(**bn_config)
        layer.build((None, 4))
    layer.trainable = trainable
    mesh = distribution.device_mesh.backend_mesh
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    x = jax.make_array_from_process_local_data(sharding, raw_shard(0)[:8])

    def call(trainable_values, non_trainable_values, x):
        return layer.stateless_call(
            trainable_values, non_trainable_values, x, training=True
        )

    compiled = (
        jax.jit(call)
        .lower(
            [v.value for v in layer.trainable_variables],
            [v.value for v in layer.non_trainable_variables],
            x,
        )
        .compile()
    )
    return len(COLLECTIVE.findall(compiled.as_text()))


def main(index, out_dir):
    jax.distributed.initialize(
        os.environ["FROZEN_BN_COORDINATOR"],
        num_processes=2,
        process_id=index,
    )
    import keras
    import numpy as np

    import frozen_bn
    from frozen_bn import _walk
    from tests import multi_worker
    from tests.multi_device_models import transfer_model

    gathers = count_process_gathers()
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    distribution.auto_shard_dataset = False  # each worker reads its shard
    arrays = {}
    record = {
        "process_count": jax.process_count(),
        "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
    }

    calls = gathers["calls"]
    multi_worker.check_recalibrate(distribution.scope, index, arrays, record)
    record["recalibrate_all_gathers"] = gathers["calls"] - calls
    multi_worker.check_diagnose(distribution.scope, index, record)

    # fit() with a frozen base: its statistics stay bitwise the same.
    keras.utils.set_random_seed(0)
    x, y = multi_worker.fit_shard(index)
    with distribution.scope():
        model, _ = transfer_model()
        model = frozen_bn.patch_model(model)
        base = model.get_layer("base")
        base.trainable = False
        model.compile(
            keras.optimizers.SGD(1e-2, momentum=0.9),
            "sparse_categorical_crossentropy",
        )
        arrays.update(multi_worker.statistics_arrays("frozen_before", base))
        arrays["head_before"] = keras.ops.convert_to_numpy(
            model.layers[-1].kernel
        )
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    arrays.update(multi_worker.statistics_arrays("frozen_after", base))
    arrays["head_after"] = keras.ops.convert_to_numpy(model.layers[-1].kernel)

    # fit() with BN layers that train: their statistics after every step.
    keras.utils.set_random_seed(0)
    steps = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # JAX's fit() keeps the state off the variables between steps.
            self.model.jax_state_sync()
            steps.append(multi_worker.flat_statistics(base))

    with distribution.scope():
        model, _ = transfer_model()
        model = frozen_bn.patch_model(model)
        base = model.get_layer("base")
        for layer in _walk.batch_norm_layers(base):
            layer.freeze_moving_stats = False
        model.compile(
            keras.optimizers.SGD(1e-2), "sparse_categorical_crossentropy"
        )
        arrays["training_before"] = multi_worker.flat_statistics(base)
        # PreciseBN on this worker's shard leaves the union's statistics.
        precise = frozen_bn.callbacks.PreciseBN(
            multi_worker.recalibrate_shard(index),
            batch_size=multi_worker.BATCH_SIZE,
            verbose=0,
        )
        # And the mode gap over the union of the workers' samples.
        monitor = frozen_bn.callbacks.ModeGapMonitor(
            *multi_worker.diagnose_shard(index),
            batch_size=multi_worker.BATCH_SIZE,
        )
        history = model.fit(
            x,
            y,
            batch_size=8,
            shuffle=False,
            verbose=0,
            callbacks=[Record(), precise, monitor],
        )
    arrays["training_steps"] = np.stack(steps)
    record["mode_gap_logs"] = {
        key: float(history.history[key][-1])
        for key in multi_worker.MODE_GAP_LOGS
    }
    arrays.update(multi_worker.named("precise_weights", model.get_weights()))
    arrays.update(multi_worker.statistics_arrays("precise", model))

    record["collectives"] = {
        "frozen": collectives_of_training_call(distribution, trainable=False),
        "freeze_moving_stats": collectives_of_training_call(
            distribution, freeze_moving_stats=True
        ),
        "training": collectives_of_training_call(distribution),
    }
    multi_worker.save(out_dir, index, arrays, record)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
