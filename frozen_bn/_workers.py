"""What the other worker processes of a multi-worker run saw, combined.

A pass of `_probe.measure_inputs` runs on the data of one process. When a
model is trained by several processes (workers), each reading its own shard
of the data, the statistics of one shard are not those of the data, and two
workers would write different "population" statistics: the replicas would
disagree. `union` turns what a pass measured on each worker into what it
would have measured on the union of every worker's data, on every worker.

Two engines run several workers, and this module asks each whether it does:
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` (the model's
  strategy, or the one in scope) whose cluster has more than one task;
- JAX: `jax.distributed.initialize` with more than one process
  (`jax.process_count() > 1`), as `keras.distribution.initialize` sets up.
With one worker, `union` returns its arguments unchanged: no collective, no
cost, bitwise the single-process answer.

The statistics of every layer (count, mean and variance in float64) go
into one flat array, gathered from every worker in one all-gather, then
merged exactly on each worker, in worker order, with
`_input_statistics.InputStatistics.merge`: every worker computes bitwise the
same result from the same bits. Outputs (for `diagnose`) have a different
number of rows on each worker; their row counts travel with the statistics,
then the rows go in a second all-gather, padded to the longest. A pass
issues one collective, or two with outputs, whatever the number of batches
and layers. `collectives_issued()` counts them.
"""

import dataclasses
import functools

import keras
import numpy as np

from frozen_bn._runtime import runs_on_tensorflow

_FIELDS = ("count", "mean", "variance")
_issued = 0


def collectives_issued():
    """How many all-gathers this module has issued in this process."""
    return _issued


def union(model, totals, outputs=None):
    """Combines one pass's measurements over every worker of the run.

    Args:
        model: The model the pass ran.
        totals: A list of `_input_statistics.InputStatistics`, this worker's.
        outputs: This worker's outputs (numpy, the structure of the model's
            outputs), or `None`.

    Returns:
        A pair: the totals over every worker's data, and the outputs of
        every worker, joined in worker order along the batch axis (`None`
        if `outputs` is). With one worker, `(totals, outputs)` unchanged.
    """
    gather = _all_gather(model)
    if gather is None:
        return totals, outputs
    rows = 0 if outputs is None else _row_count(outputs)
    workers = gather(_pack(totals, rows))
    combined = [_merged(workers, totals, index) for index in range(len(totals))]
    if outputs is None:
        return combined, None
    counts = [int(worker[-1]) for worker in workers]
    return combined, _join_rows(gather, outputs, counts)


def _pack(totals, rows):
    """Every layer's count, mean and variance, then `rows`, in one array."""
    parts = [getattr(total, name) for total in totals for name in _FIELDS]
    return np.concatenate([*map(np.ravel, parts), [rows]]).astype("float64")


def _merged(workers, totals, index):
    """Layer `index`'s totals over every worker, merged in worker order."""
    shape = totals[index].mean.shape
    size = totals[index].mean.size
    start = 3 * sum(total.mean.size for total in totals[:index])
    zeros = {name: np.zeros(shape) for name in _FIELDS}
    merged = dataclasses.replace(totals[index], **zeros)
    for worker in workers:
        count, mean, variance = (
            worker[start + i * size : start + (i + 1) * size].reshape(shape)
            for i in range(3)
        )
        merged.merge(count, mean, variance)
    return merged


def gather_rows(model, array):
    """`array` of every worker, joined along its first axis in worker order.

    The rows may differ in number between workers, not in shape or dtype.
    Two collectives (row counts, then rows); none with one worker.
    """
    gather = _all_gather(model)
    if gather is None:
        return array
    array = np.asarray(array)
    counts = [int(c) for c in gather(np.array([len(array)], "float64"))[:, 0]]
    return _join_rows(gather, array, counts)


def _row_count(outputs):
    return int(keras.tree.flatten(outputs)[0].shape[0])


def _join_rows(gather, outputs, counts):
    """Gathers rows padded to the most any worker has; drops the padding."""
    leaves = [np.asarray(leaf) for leaf in keras.tree.flatten(outputs)]
    rows = _row_count(outputs)
    widths = [_width(leaf) for leaf in leaves]
    packed = np.zeros((max(counts), sum(widths)), "float64")
    if rows:
        packed[:rows] = np.concatenate(
            [leaf.reshape(rows, -1) for leaf in leaves], axis=1
        )
    # float32 and integer outputs round-trip through float64 exactly.
    gathered = gather(packed.ravel()).reshape(len(counts), *packed.shape)
    joined = np.concatenate(
        [block[:count] for block, count in zip(gathered, counts, strict=True)]
    )
    columns = np.cumsum(widths)[:-1]
    parts = np.split(joined, columns, axis=1)
    leaves = [
        part.reshape(len(joined), *leaf.shape[1:]).astype(leaf.dtype)
        for part, leaf in zip(parts, leaves, strict=True)
    ]
    return keras.tree.pack_sequence_as(outputs, leaves)


def _width(leaf):
    return int(np.prod(leaf.shape[1:], dtype="int64"))


def _all_gather(model):
    """A function from this worker's flat float64 array to every worker's.

    The function returns a 2-D array, one row per worker in worker order
    (TensorFlow: one per replica; a worker's other local replicas send
    zeros, which merge as nothing). `None` when this process is the only
    worker.
    """
    if runs_on_tensorflow(model):
        strategy = _multi_worker_strategy(model)
        if strategy is None:
            return None
        return functools.partial(_tf_all_gather, strategy)
    if keras.backend.backend() == "jax":
        import jax

        if jax.process_count() > 1:
            return _jax_all_gather
    return None


def _multi_worker_strategy(model):
    """The `tf.distribute` strategy of `model` if it spans several tasks."""
    import tensorflow as tf

    strategy = getattr(model, "distribute_strategy", None)
    if strategy is None and tf.distribute.has_strategy():
        strategy = tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None
    spec = resolver.cluster_spec()
    if "ps" in spec.jobs:  # ParameterServerStrategy: one program, the chief's
        return None
    tasks = sum(spec.num_tasks(job) for job in spec.jobs)
    return strategy if tasks > 1 else None


def _tf_all_gather(strategy, flat):
    global _issued
    local = len(strategy.extended.worker_devices)

    def value(context):
        first = context.replica_id_in_sync_group % local == 0
        return (flat if first else np.zeros_like(flat))[None]

    values = strategy.experimental_distribute_values_from_function(value)
    _issued += 1
    gathered = _tf_gather_step(strategy)(values)
    return strategy.experimental_local_results(gathered)[0].numpy()


@functools.cache
def _tf_gather_step(strategy):
    import tensorflow as tf

    def gather(value):
        context = tf.distribute.get_replica_context()
        # On the replica's device: a value without one has no destination.
        return context.all_gather(tf.identity(value), axis=0)

    return tf.function(lambda values: strategy.run(gather, (values,)))


def _jax_all_gather(flat):
    global _issued
    from jax.experimental import multihost_utils

    # JAX computes in 32 bits unless x64 is on: float64 travels as its bits.
    bits = np.ascontiguousarray(flat, "float64").view("uint32")
    _issued += 1
    gathered = np.asarray(multihost_utils.process_allgather(bits))
    return np.ascontiguousarray(gathered).view("float64")
