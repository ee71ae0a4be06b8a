"""frozen_bn with two JAX processes (`jax.distributed`) under `DataParallel`."""

import numpy as np

from tests import multi_worker


def test_two_processes_of_one_device_each(results):
    for _, record in results:
        assert record["process_count"] == 2
        assert (record["devices"], record["local_devices"]) == (2, 1)


def test_frozen_statistics_unchanged_on_every_worker_after_fit(results):
    for arrays, _ in results:
        assert not np.array_equal(arrays["head_after"], arrays["head_before"])
        for i in range(4):
            np.testing.assert_array_equal(
                arrays[f"frozen_after/{i}"], arrays[f"frozen_before/{i}"]
            )


def test_frozen_layer_compiles_to_no_collective(results):
    for _, record in results:
        collectives = record["collectives"]
        assert collectives["frozen"] == collectives["freeze_moving_stats"] == 0
        # The counterpart: a layer that trains reduces over both processes.
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


def test_precise_bn_in_fit_writes_statistics_of_the_union(results):
    multi_worker.assert_precise_bn_wrote_the_union(results)


def test_mode_gap_monitor_in_fit_logs_the_union(results):
    multi_worker.assert_mode_gap_logged_over_the_union(results)
