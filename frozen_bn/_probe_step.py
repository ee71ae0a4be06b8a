"""The compiled per-batch step of a `_probe.Probe`.

The step runs the model on one batch, in one mode or several, and returns
its outputs and the moments that the probe's intercepted layers recorded
while it ran. It is compiled the way `predict()` compiles: a `tf.function`
on TensorFlow (and for tf_keras models), `jax.jit` of `stateless_call` on
JAX, eager under `torch.no_grad()` on torch; `model.run_eagerly = True` runs
it eagerly. Several modes run in the same step, so that a compiler computes
once what they share (a frozen bottom is the same in both modes).
"""

import keras

from frozen_bn import _variable_values
from frozen_bn._runtime import runs_on_tensorflow


class Records(dict):
    """The moments recorded by each measured layer's calls, by layer index.

    Filled while the model is traced (or, run eagerly, called) and while
    `recording`; the step returns its contents, so a compiled step returns
    the measurements of each batch without running Python again.
    """

    recording = True


def compile_step(model, training, records, kept):
    """The per-batch step: inputs in; outputs and that batch's records out.

    Args:
        model: The model to run.
        training: A mode, or a tuple of modes (see `_probe.Probe`).
        records: The `Records` that the measured layers fill.
        kept: See `_run_modes`.
    """

    def run(x):
        def call(mode):
            return model(x, training=mode)

        return _run_modes(call, training, records, kept)

    if getattr(model, "run_eagerly", False):
        return run
    if runs_on_tensorflow(model):
        import tensorflow as tf

        return tf.function(run, reduce_retracing=True)
    if keras.backend.backend() == "jax":
        return _jax_step(model, training, records)  # Stateless.
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()(run)
    return run


def _jax_step(model, training, records):
    """A jitted stateless step, given the model's variables of each call."""
    import jax

    def run(trainable, non_trainable, x):
        def call(mode):
            outputs, _ = model.stateless_call(
                trainable, non_trainable, x, training=mode
            )
            return outputs

        return _run_modes(call, training, records, ())

    compiled = jax.jit(run)

    def step(x):
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return compiled(trainable, non_trainable, x)

    return step


def _run_modes(call, training, records, kept):
    """Calls the model in each mode; its outputs and the first call's records.

    Args:
        call: Calls the model on the batch, given a `training` argument.
        training: A mode, or a tuple of modes (see `Probe`).
        records: The `Records` that the measured layers fill.
        kept: Variables that calls in later modes may write and the first
            mode reads (BN statistics): put back after each of those calls.
    """
    modes = training if isinstance(training, tuple) else (training,)
    records.clear()
    outputs = [call(modes[0])]
    measured = {index: list(calls) for index, calls in records.items()}
    records.recording = False
    try:
        for mode in modes[1:]:
            saved = _variable_values.snapshot(kept)
            outputs.append(call(mode))
            _variable_values.assign(kept, saved)
    finally:
        records.recording = True
    return (tuple(outputs) if modes is training else outputs[0]), measured
