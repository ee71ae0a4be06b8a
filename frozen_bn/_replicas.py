"""Keeps a layer's moving statistics equal on every `tf.distribute` replica.

Under `tf.distribute.MirroredStrategy`, Keras 3 creates the moving statistics
of BatchNormalization with `aggregation="none"`: in a training step each
replica writes its own copy with the statistics of its own shard of the
batch, the copies drift apart, and which one is saved or used by
`evaluate()` depends on the device. A synchronized layer
(`synchronized=True`) does not drift, since its batch statistics are already
reduced over the replicas. For the others, `average_over_replicas` sets each
copy to the mean of the copies after an update, one all-reduce per layer and
step. With equal copies before the step, that mean is
`moving * momentum + mean_over_replicas(batch_stat) * (1 - momentum)`.

JAX (`keras.distribution.DataParallel`) needs none of this: a training step is
one program over the global batch, whose statistics are global.
"""

import keras


def average_over_replicas(layer):
    """Sets each of `layer`'s non-trainable variables to its replica mean.

    Does nothing (and adds nothing to the graph) outside a replica context
    of a `tf.distribute` strategy with more than one replica in sync, so it
    costs nothing on one device or on other backends.

    Args:
        layer: A layer whose non-trainable variables every replica updates.
    """
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return
    variables = layer.non_trainable_variables
    # Copied on the replica's device: under MultiWorkerMirroredStrategy, a
    # variable's value has no device, and the all-reduce no destination.
    values = [tf.identity(keras.ops.convert_to_tensor(v)) for v in variables]
    means = context.all_reduce(tf.distribute.ReduceOp.MEAN, values)
    for variable, mean in zip(variables, means, strict=True):
        variable.assign(mean)
