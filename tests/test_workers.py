"""`_workers` in one process: no collective, and the merge it performs.

The multi-worker suites (`tests/multi_worker_tf`, `tests/multi_worker_jax`)
run it with two real workers; these tests check, in any process, that one
worker costs nothing, and that what each worker sends merges into the
totals of one pass over all the data.
"""

import numpy as np

import frozen_bn
from frozen_bn import _probe, _walk, _workers
from tests.helpers import images
from tests.multi_device_models import transfer_model


def measure(model, x):
    layers = _walk.batch_norm_layers(model)
    return _probe.measure_inputs(
        model, x, layers, training=False, batch_size=8, verbose=0
    )


def test_one_process_issues_no_collective():
    model, _ = transfer_model()
    issued = _workers.collectives_issued()
    frozen_bn.recalibrate(model, images(count=20), batch_size=8, verbose=0)
    frozen_bn.diagnose(model, images(count=20), verbose=0)
    assert _workers.collectives_issued() == issued


def test_one_process_union_returns_its_arguments():
    model, _ = transfer_model()
    totals = measure(model, images(count=8))
    outputs = np.zeros((8, 3))
    combined, joined = _workers.union(model, totals, outputs)
    assert combined is totals and joined is outputs


def test_totals_of_two_shards_merge_into_those_of_all_the_data():
    model, _ = transfer_model()
    x = images(count=36)  # shards of 16 and 20: the same batches of 8
    first, second = measure(model, x[:16]), measure(model, x[16:])
    expected = measure(model, x)
    sent = np.stack([_workers._pack(first, 16), _workers._pack(second, 20)])
    for index, want in enumerate(expected):
        merged = _workers._merged(sent, first, index)
        np.testing.assert_array_equal(merged.count, want.count)
        np.testing.assert_allclose(merged.mean, want.mean, rtol=1e-12)
        np.testing.assert_allclose(merged.variance, want.variance, rtol=1e-12)


def test_rows_of_uneven_length_join_in_worker_order():
    rng = np.random.default_rng(0)
    mine = {"a": rng.random((3, 2)).astype("float32"), "b": np.arange(3)}
    theirs = {"a": rng.random((5, 2)).astype("float32"), "b": np.arange(5)}

    def gather(flat):  # what the second worker sends, padded to 5 rows
        padded = np.zeros((5, 3))
        padded[:, :2], padded[:, 2] = theirs["a"], theirs["b"]
        return np.stack([flat, padded.ravel()])

    joined = _workers._join_rows(gather, mine, [3, 5])
    for key in mine:
        expected = np.concatenate([mine[key], theirs[key]])
        np.testing.assert_array_equal(joined[key], expected)
        assert joined[key].dtype == mine[key].dtype
