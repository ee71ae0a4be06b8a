"""frozen_bn with two workers under `tf.distribute.MultiWorkerMirroredStrategy`.

Training runs in a `strategy.run` loop: Keras 3's `fit()` fails under this
strategy (see `test_keras_fit_still_fails_under_the_strategy`).
"""

import numpy as np

from tests import multi_worker


def test_two_workers_of_one_replica_each(results):
    for _, record in results:
        assert (record["replicas"], record["local_replicas"]) == (2, 1)


def test_keras_fit_still_fails_under_the_strategy(results):
    # keras-team/keras#20585: fit() reduces a PerReplica batch it cannot
    # convert. When this fails, fit() runs: train with it in the worker.
    for _, record in results:
        assert record["keras_fit"].startswith(
            "ValueError: Attempt to convert a value (PerReplica"
        )


def test_frozen_statistics_unchanged_on_every_worker_after_training(results):
    for arrays, _ in results:
        assert not np.array_equal(arrays["head_after"], arrays["head_before"])
        for i in range(4):
            np.testing.assert_array_equal(
                arrays[f"frozen_after/{i}"], arrays[f"frozen_before/{i}"]
            )


def test_frozen_layer_traces_no_collective(results):
    for _, record in results:
        collectives = record["collectives"]
        assert collectives["frozen"] == collectives["freeze_moving_stats"] == 0
        # The counterpart: a layer that trains reduces across the workers.
        assert collectives["training"] > 0


def test_training_statistics_agree_across_workers_after_each_step(results):
    (first, _), (second, _) = results
    steps = first["training_steps"]
    assert len(steps) == multi_worker.FIT_SIZE // multi_worker.BATCH_SIZE
    np.testing.assert_array_equal(steps, second["training_steps"])
    assert not np.array_equal(steps[-1], first["training_before"])


def test_recalibrate_writes_statistics_of_the_union(results):
    multi_worker.assert_recalibrated_union(results)


def test_recalibrate_issues_one_collective_however_many_batches(results):
    multi_worker.assert_collectives_constant(results)


def test_diagnose_reports_over_the_union(results):
    multi_worker.assert_diagnosed_union(results)


def test_tf_keras_frozen_statistics_unchanged_after_fit(results):
    for arrays, _ in results:
        for i in range(2):
            np.testing.assert_array_equal(
                arrays[f"tf_keras_frozen_after/{i}"],
                arrays[f"tf_keras_frozen_before/{i}"],
            )


def test_tf_keras_training_statistics_agree_after_each_fit_step(results):
    (first, _), (second, _) = results
    steps = first["tf_keras_training_steps"]
    assert len(steps) >= 2
    np.testing.assert_array_equal(steps, second["tf_keras_training_steps"])
    assert not np.array_equal(steps[-1], first["tf_keras_training_before/0"])


def test_tf_keras_precise_bn_in_fit_writes_statistics_of_the_union(results):
    import frozen_bn
    import frozen_bn.tf_keras  # noqa: F401 (patch_model's tf_keras classes)
    from tests.multi_worker_tf.worker import tf_keras_model

    (first, _), (second, _) = results
    reference = frozen_bn.patch_model(tf_keras_model())
    weights = [
        first[f"tf_keras_weights/{i}"] for i in range(len(reference.weights))
    ]
    for i, value in enumerate(weights):
        np.testing.assert_array_equal(second[f"tf_keras_weights/{i}"], value)
    reference.set_weights(weights)
    multi_worker.recalibrate_over_union(reference)
    bn = reference.get_layer("bn")
    for i, variable in enumerate([bn.moving_mean, bn.moving_variance]):
        name = f"tf_keras_training_after/{i}"
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_allclose(first[name], variable.numpy(), rtol=1e-6)
    # Not what the moving average of training left.
    assert not np.allclose(
        first["tf_keras_training_after/0"],
        first["tf_keras_training_steps"][-1],
        rtol=1e-2,
    )
