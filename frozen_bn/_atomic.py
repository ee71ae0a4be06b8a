"""Writes files whole or not at all.

Every file frozen_bn writes (models, cached features, figures, reports, the
demo's cache) is written to a temporary file next to its target, flushed to
disk, and renamed over the target with `os.replace`, which is atomic within
one directory: a reader, or a run that was interrupted, finds the old file or
the complete new one, never part of one. A file that was open or
memory-mapped when it was replaced keeps its old content for whoever holds
it, so replacing a file never changes an array read from it earlier.
"""

import contextlib
import os
import secrets
import shutil


@contextlib.contextmanager
def replacing(path):
    """Yields a temporary path to write; moves it onto `path` on success.

    The temporary file is in the directory of `path` and ends like it (Keras
    and matplotlib read the format from the extension). If the block raises
    (an interruption included), the temporary file is removed and `path` is
    left as it was.

    Args:
        path: The file to write; its directory must exist.

    Yields:
        The temporary path, a file that exists and is empty.
    """
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    suffix = os.path.splitext(name)[1]
    temporary = _name_beside(directory, name, suffix)
    try:
        os.close(
            os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        )
        os.chmod(temporary, _mode_for(path))
        yield temporary
        _sync(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_directory(directory)


@contextlib.contextmanager
def replacing_entries(path):
    """Yields a path to write in a staging directory beside `path`; moves
    what was written there into place on success.

    For writers that make a directory (a SavedModel) or files beside the
    one named (an ONNX model's external data). Each entry is flushed to
    disk, then renamed over its target; a directory that is replaced is
    moved aside first and removed after. If the block raises, nothing
    beside `path` changes.

    Args:
        path: The file or directory to write; its directory must exist.

    Yields:
        The path to write, named like `path`, in an empty directory.
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    staging = _name_beside(directory, name)
    try:
        os.mkdir(staging, 0o700)
        yield os.path.join(staging, name)
        for entry in os.listdir(staging):
            written, target = (
                os.path.join(staging, entry),
                os.path.join(directory, entry),
            )
            _sync_tree(written)
            if os.path.isdir(target) and not os.path.islink(target):
                os.replace(target, os.path.join(staging, ".replaced"))
            os.replace(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync_directory(directory)


def save_figure(figure, path, **kwargs):
    """`figure.savefig(path, **kwargs)`, whole or not at all.

    The format comes from the extension of `path`, as matplotlib reads it.
    """
    with replacing(path) as temporary:
        figure.savefig(temporary, **kwargs)


def _name_beside(directory, name, suffix=""):
    """A new hidden name beside `name` for a temporary file or directory.

    The name is chosen before the entry is created, inside the block that
    removes it, so an interruption cannot fall between the two (a signal
    handler can run after any call returns). Its 64 random bits make a
    clash with another entry practically impossible.
    """
    return os.path.join(
        directory, f".{name}.{secrets.token_hex(8)}.tmp{suffix}"
    )


def _mode_for(path):
    """The permissions of the file at `path`, or those a new file gets."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _sync(path):
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _sync_tree(path):
    """Flushes a file, or every file under a directory, to disk."""
    if not os.path.isdir(path):
        _sync(path)
        return
    for root, _, files in os.walk(path):
        for name in files:
            _sync(os.path.join(root, name))


def _sync_directory(directory):
    """Makes the rename itself durable (POSIX; not possible on Windows)."""
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
