"""One pass over data that measures the inputs of BatchNormalization layers.

`measure_inputs` (or a reusable `Probe`) runs a model over data batch by
batch and measures, for every chosen BN layer at once, the count, mean and
population variance of that layer's inputs: a single pass, however many
layers. Each BN instance's `call` is wrapped for the duration of the pass
(and restored in a `finally`), so layers are reached wherever they live:
nested models, Sequential models, subclassed models, shared layers (every
call counts).

Per batch the wrapper computes the mean and population variance over every
axis but the layer's feature axis (see `_moments`); the host
combines the batches exactly, weighted by their counts, in float64 (see
`_input_statistics`). No exponential moving average is involved.

The pass is compiled the way `predict()` compiles (see `_probe_step`). A
`Probe` keeps its compiled pass for the runs that follow, so a callback
that measures every epoch compiles once; `measure_inputs` is a probe run
once. Whatever the layers write while the model runs in training mode
(moving statistics, random seeds) is put back at the end of the pass. A
keras-hub task's preprocessor runs on each batch first, on the host, as in
`fit()`.
"""

import contextlib

import keras
import numpy as np

from frozen_bn import (
    _input_statistics,
    _moments,
    _moving_stats,
    _probe_step,
    _variable_values,
    _workers,
)
from frozen_bn._checks import check_verbose
from frozen_bn._data import read_batches
from frozen_bn._runtime import is_tf_keras_model as _is_tf_keras
from frozen_bn._walk import batch_norm_layers


def measure_inputs(
    model,
    data,
    layers,
    *,
    training,
    batch_statistics=(),
    batch_size=32,
    steps=None,
    verbose="auto",
    return_outputs=False,
):
    """Measures the inputs of `layers` over one pass of `model` on `data`.

    A `Probe` used once; see `Probe` and `Probe.run` for the arguments.
    """
    probe = Probe(
        model, layers, training=training, batch_statistics=batch_statistics
    )
    return probe.run(
        data,
        batch_size=batch_size,
        steps=steps,
        verbose=verbose,
        return_outputs=return_outputs,
    )


class Probe:
    """A compiled pass of a model that measures the inputs of BN layers.

    The pass is compiled on its first run and reused by the next ones, as
    `predict()` reuses its function: a callback that measures every epoch
    pays for compiling once. Like `fit()`'s own functions, it keeps the
    `trainable` and `freeze_moving_stats` flags it was compiled with.

    Args:
        model: A built Keras 3 or tf_keras model containing `layers`.
        layers: The BatchNormalization layers to measure.
        training: The `training` argument the model is called with, or a
            tuple of them: the model then runs once per mode on every batch,
            in one compiled step (where a compiler computes what the modes
            share once, such as a frozen bottom), `layers` are measured in
            the first mode only, and `run` returns a tuple of outputs.
        batch_statistics: Layers (among `layers`) that normalize with the
            statistics of each batch, as in training mode, whether they are
            frozen or not; their moving statistics are neither used nor
            updated.
    """

    def __init__(self, model, layers, *, training, batch_statistics=()):
        self.model = model
        self.layers = list(layers)
        self._forced = {id(layer) for layer in batch_statistics}
        self._records = _probe_step.Records()
        # JAX's compiled step is `stateless_call`: it writes no variable.
        self._stateless = (
            keras.backend.backend() == "jax"
            and not _is_tf_keras(model)
            and not getattr(model, "run_eagerly", False)
        )
        # What a training-mode call writes, the first mode of the next batch
        # must not read: each step puts back the statistics later modes set.
        kept = batch_norm_layers(model) if not self._stateless else []
        self._step = _probe_step.compile_step(
            model, training, self._records, _moving_stats.variables(kept)
        )

    def run(
        self,
        data,
        *,
        name="data",
        batch_size=32,
        steps=None,
        verbose="auto",
        return_outputs=False,
    ):
        """Runs the pass over `data`; writes no variable.

        Args:
            data: Any form `_data.read_batches` accepts; preprocessed and
                checked per batch (see `_data`).
            name: The argument `data` was passed as, for error messages.
            batch_size: Batch size for array data.
            steps: If given, stop after this many batches.
            verbose: As in `fit()`: "auto", 0, 1 or 2.
            return_outputs: Whether to also return the model's outputs.

        Returns:
            A list of `_input_statistics.InputStatistics`, one per layer of
            `layers`; with `return_outputs`, a pair of that list and the
            model's outputs over all of `data` (numpy, with the structure of
            the model's outputs).
        """
        verbose = check_verbose(verbose)
        batches, count = read_batches(
            self.model, data, name=name, batch_size=batch_size, steps=steps
        )
        progbar = keras.utils.Progbar(count, verbose=verbose, unit_name="batch")
        written = [] if self._stateless else self.model.non_trainable_variables
        saved = _variable_values.snapshot(written)
        with _kept_global_random_state(self.model):
            try:
                # A (re)trace of the step reads the calls made while it runs.
                for index, layer in enumerate(self.layers):
                    self._intercept(layer, index)
                totals, outputs, seen = self._measure(
                    batches, progbar, return_outputs
                )
            finally:
                for layer in self.layers:
                    _release(layer)
                _variable_values.assign(written, saved)
        progbar.update(seen, finalize=True)
        outputs = _concatenate(outputs) if return_outputs else None
        # Several workers, each on its shard: the statistics of the union.
        totals, outputs = _workers.union(self.model, totals, outputs)
        if return_outputs:
            return totals, outputs
        return totals

    def _measure(self, batches, progbar, return_outputs):
        """The step over every batch.

        Returns:
            The `InputStatistics` of each layer, the outputs of each batch
            (if `return_outputs`, else an empty list) and the number of
            batches.
        """
        totals = _input_statistics.Totals(
            [layer.moving_mean.shape for layer in self.layers]
        )
        outputs = []
        seen = 0
        for seen, x in enumerate(batches, start=1):
            batch_outputs, records = self._step(_to_tensors(self.model, x))
            if return_outputs:
                outputs.append(
                    keras.tree.map_structure(_to_numpy, batch_outputs)
                )
            totals.add(keras.tree.map_structure(_to_numpy, records))
            progbar.update(seen, finalize=False)
        return totals.result(), outputs, seen

    def _intercept(self, layer, index):
        """Wraps `layer.call` so that each call records its input moments.

        A layer with forced batch statistics normalizes with the moments it
        records, as in training mode, instead of running its own `call`,
        which would measure them a second time and update its moving
        statistics.
        """
        original = layer.call
        moments, normalize = _moments.for_model(self.model)
        force_batch_statistics = id(layer) in self._forced
        records = self._records

        def call(inputs, *args, **kwargs):
            if not records.recording:
                return original(inputs, *args, **kwargs)
            mask = kwargs.get("mask")
            if force_batch_statistics:
                outputs, measured = normalize(layer, inputs, mask)
            else:
                measured = moments(layer, inputs, mask)
                outputs = original(inputs, *args, **kwargs)
            records.setdefault(str(index), []).append(measured)
            return outputs

        layer.call = call


def _release(layer):
    """Undoes `Probe._intercept`: the class's `call` is the layer's again."""
    if "call" in layer.__dict__:
        del layer.call


def _kept_global_random_state(model):
    """Puts back the backend's global random state after the pass.

    Keras draws unseeded Dropout masks on torch from torch's global
    generator, which a training-mode pass would otherwise advance.
    """
    if keras.backend.backend() == "torch" and not _is_tf_keras(model):
        import torch

        return torch.random.fork_rng()
    return contextlib.nullcontext()


def _concatenate(batches):
    """Joins per-batch numpy outputs along the batch axis."""
    return keras.tree.map_structure(
        lambda *parts: np.concatenate(parts), *batches
    )


def _to_tensors(model, x):
    if _is_tf_keras(model):
        return x
    return keras.tree.map_structure(keras.ops.convert_to_tensor, x)


def _to_numpy(value):
    if hasattr(value, "numpy") and not isinstance(value, keras.Variable):
        return np.asarray(value.numpy())  # tf_keras variables, tf tensors
    return keras.ops.convert_to_numpy(value)
