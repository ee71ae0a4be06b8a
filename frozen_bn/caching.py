"""Runs a frozen base over data once and keeps its outputs for training."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import keras
import numpy as np

from frozen_bn._atomic import in_the_way, replacing
from frozen_bn._checks import check_model, check_path, check_verbose
from frozen_bn._data import read_batches


def cache_features(
    base: keras.Model,
    data: Any,
    *,
    batch_size: int = 32,
    path: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> np.ndarray | list[np.ndarray]:
    """Runs `base` once over `data` in inference mode and keeps its outputs.

    Pair it with `split_model`: train the head on the returned features
    instead of running the frozen base in every epoch. Batches go through
    `base.predict_on_batch`, so the features equal `base.predict(x)` with the
    same batch size.

    Only the model inputs of `data` are used. The features come out in the
    order `data` yields its batches, so keep the labels in the same order
    (don't cache a shuffling dataset).

    With `path`, features are written batch by batch to `.npy` files in that
    directory and returned as read-only `numpy.memmap`s, so they may be
    larger than memory: `features_0.npy` for the base's first output,
    `features_1.npy` for its second, and so on. The files belong to the
    caller: they stay after the call (reopen them later with
    `numpy.load(file, mmap_mode="r")`) until the caller deletes them, e.g.
    `shutil.rmtree(path)` once the returned arrays are no longer used. Each
    file is written whole or not at all: if caching fails or is interrupted
    part way, the files of `path` stay as they were; a later call with the
    same `path` replaces them, and the arrays an earlier call returned keep
    their values (they read the files they were opened from).

    Args:
        base: A built `keras.Model`, e.g. the base returned by
            `split_model`.
        data: Any form of frozen_bn's data contract (docs/data.md): a
            numpy array (or a list/dict of them for a multi-input model),
            an `(x, y)` or `(x, y, sample_weight)` tuple of those, a
            `tf.data.Dataset`, a `keras.utils.PyDataset`, or any other
            iterable of batches. Each batch is checked against the inputs
            of `base` and for non-finite values before `base` sees it.
        batch_size: Batch size used to slice arrays; ignored for forms that
            are already batched.
        path: `None` to keep the features in memory, or a directory (made
            if missing) for memory-mapped `.npy` files. Only files named
            `features_<i>.npy` in it are replaced; anything else of that
            name there (a directory, a link) is refused.
        verbose: `"auto"`, 0, 1 or 2, as in `fit()`: `"auto"` and 1 show a
            progress bar, 2 one line at the end, 0 nothing.

    Returns:
        A numpy array (or `numpy.memmap`) of features with one row per
        sample, or a list of them if `base` has several outputs.

    Example:

    >>> base, head = frozen_bn.split_model(model, "conv4_block6_out")
    >>> features = frozen_bn.cache_features(base, (images, labels))
    >>> head.fit(features, labels, epochs=10)
    """
    check_model(base, "base", keras3_only=True)
    progbar_verbose = check_verbose(verbose)
    path = _check_directory(path)
    batches, count = read_batches(
        base, data, batch_size=batch_size, steps_name=None
    )
    progbar = keras.utils.Progbar(count, verbose=progbar_verbose)
    sink = _MemorySink() if path is None else _FileSink(path)
    with sink:
        for step, batch in enumerate(batches, start=1):
            outputs = keras.tree.flatten(base.predict_on_batch(batch))
            sink.add([np.asarray(output) for output in outputs])
            progbar.update(step, finalize=False)
        progbar.update(step, finalize=True)
        features = sink.result()
    return features[0] if len(features) == 1 else features


# The two sinks share a protocol (a context manager with `add` and
# `result`), so their small methods look alike; what each does differs.
class _MemorySink:
    """Collects batches in memory and concatenates them at the end."""

    def __init__(self):
        self.parts = None

    def __enter__(self):
        return self

    def __exit__(self, *error):
        return False

    def add(self, outputs):
        if self.parts is None:
            self.parts = [[] for _ in outputs]
        for parts, output in zip(self.parts, outputs, strict=True):
            parts.append(output)

    def result(self):
        return [np.concatenate(parts) for parts in self.parts]


class _FileSink:
    """Streams batches into `.npy` files, one per base output.

    Each file is written next to its target and renamed onto it once whole
    (see `_atomic`): an interrupted call leaves the files as they were, and
    arrays memory-mapped from the files of an earlier call keep their
    values. Each file starts with a header for zero rows; once the row count
    is known, the header is rewritten in place (numpy leaves room in it for
    the row count to grow).
    """

    def __init__(self, path):
        self.directory = os.fspath(path)
        self.files = None
        self.samples = None  # An empty slice of each output: dtype, shape.
        self.header_sizes = None
        self.rows = 0
        self._renames = contextlib.ExitStack()

    def __enter__(self):
        os.makedirs(self.directory, exist_ok=True)
        return self

    def __exit__(self, *error):
        for file in self.files or ():
            file.close()
        return self._renames.__exit__(*error)

    def add(self, outputs):
        if self.files is None:
            self.samples = [output[:0] for output in outputs]
            self.files = [self._open(index) for index in range(len(outputs))]
            for file, sample in zip(self.files, self.samples, strict=True):
                _write_header(file, sample, rows=0)
            self.header_sizes = [file.tell() for file in self.files]
        for file, output in zip(self.files, outputs, strict=True):
            file.write(np.ascontiguousarray(output).tobytes())
        self.rows += len(outputs[0])

    def _path(self, index):
        return os.path.join(self.directory, f"features_{index}.npy")

    def _open(self, index):
        writing = replacing(self._path(index), "path", self.directory)
        temporary = self._renames.enter_context(writing)
        return open(temporary, "wb")  # noqa: SIM115  (closed in result)

    def result(self):
        sizes = zip(self.files, self.samples, self.header_sizes, strict=True)
        for file, sample, size in sizes:
            file.seek(0)
            _write_header(file, sample, rows=self.rows)
            if file.tell() != size:  # numpy reserves room; never expected.
                raise RuntimeError(
                    f"Could not finish the header of {file.name}"
                )
            file.close()
        self._renames.close()  # Each file renamed onto its target.
        return [
            np.load(self._path(index), mmap_mode="r")
            for index in range(len(self.files))
        ]


def _check_directory(path):
    """`path` as a str, if `cache_features` may write its files there."""
    path = check_path(path, "path", allow_none=True)
    if path is None or os.path.isdir(path):
        return path
    expected = "Expected `path` to be a directory (made if missing) or None"
    if not path or os.path.lexists(path):
        what = in_the_way(path, "directory") if path else "empty"
        raise ValueError(f"{expected}; it is {what}. Received: path={path!r}")
    return path


def _write_header(file, sample, rows):
    header = {
        "descr": np.lib.format.dtype_to_descr(sample.dtype),
        "fortran_order": False,
        "shape": (rows, *sample.shape[1:]),
    }
    np.lib.format.write_array_header_1_0(file, header)
