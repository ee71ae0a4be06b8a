"""Writes files whole or not at all, and only over what frozen_bn writes.

Every file frozen_bn writes (models, cached features, figures, reports, the
demo's cache) is written to a temporary file next to its target, flushed to
disk, and renamed over the target with `os.replace`, which is atomic within
one directory: a reader, or a run that was interrupted, finds the old file or
the complete new one, never part of one. A file that was open or
memory-mapped when it was replaced keeps its old content for whoever holds
it, so replacing a file never changes an array read from it earlier.

Nothing that frozen_bn did not write is removed: a file replaces only a
regular file, a directory only an empty directory or one holding the
`marker` file of the directory frozen_bn writes there (a SavedModel's
`saved_model.pb`), and nothing replaces the working directory, the home
directory, a directory holding either, or the root of a filesystem
(`check_replaceable`). An `OSError` about a temporary path is raised again
naming the path the caller gave.
"""

import contextlib
import os
import secrets
import shutil
import stat


def check_replaceable(path, name, kind="file", marker=None, received=None):
    """Raises a `ValueError` unless a `kind` written at `path` may replace
    what is there.

    Args:
        path: The target.
        name: The argument that gave it, for the message.
        kind: `"file"` or `"directory"`, what is written.
        marker: A directory holding this file may be replaced.
        received: What the argument was, if not `path`.
    """
    what = in_the_way(path, kind, marker)
    if what is None:
        return
    if kind == "file":
        replaceable = "a file"
    else:
        replaceable = f"an empty directory or one holding {marker}"
    received = path if received is None else received
    raise ValueError(
        f"Expected `{name}` to be a new path or {replaceable}; {path!r} is "
        f"{what}, which is not replaced. Received: {name}={received!r}"
    )


def in_the_way(path, kind="file", marker=None):
    """What at `path` a `kind` written there must not replace, in words;
    `None` when there is nothing, or what is there may be replaced."""
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    if os.path.ismount(absolute):
        return "the root of a filesystem"
    for what, place in (
        ("the working directory", os.getcwd()),
        ("the home directory", os.path.expanduser("~")),
    ):
        place = os.path.realpath(place)
        if real == place:
            return what
        if place.startswith(os.path.join(real, "")):
            return f"a directory holding {what}"
    try:
        mode = os.lstat(absolute).st_mode
    except OSError:  # Nothing there, or nothing that can be seen.
        return None
    if stat.S_ISREG(mode):
        return None if kind == "file" else "a file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if not stat.S_ISDIR(mode):
        return "a special file"
    if kind == "file":
        return "a directory"
    if _is_empty_or_marked(absolute, marker):
        return None
    return f"a directory that is not empty and holds no {marker}"


@contextlib.contextmanager
def replacing(path, name="path", received=None):
    """Yields a temporary path to write; moves it onto `path` on success.

    The temporary file is in the directory of `path` and ends like it (Keras
    and matplotlib read the format from the extension). If the block raises
    (an interruption included), the temporary file is removed and `path` is
    left as it was.

    Args:
        path: The file to write; its directory must exist. Only a regular
            file there is replaced.
        name: The argument that gave `path`, named in errors.
        received: What that argument was, if not `path`.

    Yields:
        The temporary path, a file that exists and is empty.

    Raises:
        ValueError: Something other than a regular file is at `path`.
        OSError: Writing failed; the error names `path`.
    """
    path = os.fspath(path)
    check_replaceable(path, name, received=received)
    directory, base = os.path.split(os.path.abspath(path))
    suffix = os.path.splitext(base)[1]
    temporary = _name_beside(directory, base, suffix)
    try:
        with _naming(path, [temporary]):
            os.close(
                os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            )
            os.chmod(temporary, _mode_for(path))
            yield temporary
            _sync(temporary)
            # Something else may have come there since.
            check_replaceable(path, name, received=received)
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _sync_directory(directory)


@contextlib.contextmanager
def replacing_entries(path, name="path", marker=None):
    """Yields a path to write in a staging directory beside `path`; moves
    what was written there into place on success.

    For writers that make a directory (a SavedModel) or files beside the
    one named (an ONNX model's external data). What the block writes can
    be read (checked) in the staging directory before anything beside
    `path` changes. Then every entry's target is checked
    (`check_replaceable`), and each entry flushed to disk and renamed in;
    what it replaces is renamed aside first and removed only once every
    entry is in place. If the block raises, or a rename fails or is
    interrupted, everything is put back: nothing beside `path` changes.

    Args:
        path: The file or directory to write; its directory must exist.
        name: The argument that gave `path`, named in errors.
        marker: A directory holding this file may be replaced.

    Yields:
        The path to write, named like `path`, in an empty directory.

    Raises:
        ValueError: An entry would replace something frozen_bn did not
            write there.
        OSError: Writing failed; the error names `path`.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    staging = _name_beside(directory, base)
    hidden = [staging]
    try:
        with _naming(path, hidden):
            os.mkdir(staging, 0o700)
            yield os.path.join(staging, base)
            moves = [
                (os.path.join(staging, entry), os.path.join(directory, entry))
                for entry in sorted(os.listdir(staging))
            ]
            for written, target in moves:
                kind = "directory" if os.path.isdir(written) else "file"
                check_replaceable(target, name, kind, marker, received=path)
                _sync_tree(written)
            _move_into_place(moves, hidden)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _sync_directory(directory)


def _move_into_place(moves, hidden):
    """Renames each `(written, target)` pair's entry onto its target; puts
    everything back if that fails or is interrupted part way."""
    asides = []
    try:
        for written, target in moves:
            aside = None
            if os.path.lexists(target):
                aside = _name_beside(*os.path.split(target))
                hidden.append(aside)
            asides.append(aside)
            if aside is not None:
                os.replace(target, aside)
            os.replace(written, target)
    except BaseException:
        for (written, target), aside in reversed(
            list(zip(moves, asides, strict=False))
        ):
            _put_back(written, target, aside)
        raise
    for aside in filter(None, asides):
        _remove(aside)


def _put_back(written, target, aside):
    """Undoes what `_move_into_place` did to one target, at any point."""
    if not os.path.lexists(written) and os.path.lexists(target):
        os.replace(target, written)  # The new entry goes back to staging.
    if aside is not None and os.path.lexists(aside):
        os.replace(aside, target)


def save_figure(figure, path, **kwargs):
    """`figure.savefig(path, **kwargs)`, whole or not at all.

    The format comes from the extension of `path`, as matplotlib reads it.
    Only a regular file at `path` is replaced (see `replacing`).
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


@contextlib.contextmanager
def _naming(path, hidden):
    """Raises an `OSError` about one of the `hidden` temporary paths again,
    naming `path` instead: the caller knows `path`, not them."""
    try:
        yield
    except OSError as error:
        names = (error.filename, error.filename2)
        if error.errno is None or not any(
            isinstance(name, str) and name.startswith(tuple(hidden))
            for name in names
        ):
            raise
        raise OSError(error.errno, error.strerror, path) from error


def _is_empty_or_marked(directory, marker):
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return not entries or (
        marker is not None and os.path.isfile(os.path.join(directory, marker))
    )


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


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
