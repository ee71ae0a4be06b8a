"""Tests for `frozen_bn._atomic`: files written whole or not at all."""

import os
import stat

import pytest

from frozen_bn import _atomic


def test_replacing_writes_the_new_file_whole(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")
    with _atomic.replacing(target) as temporary:
        assert os.path.dirname(temporary) == str(tmp_path)
        assert temporary.endswith(".keras")  # Keras reads the extension.
        with open(temporary, "wb") as file:
            file.write(b"new")
        assert target.read_bytes() == b"old"  # Not before the block ends.
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["model.keras"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_replacing_keeps_the_old_file_when_the_block_fails(tmp_path, error):
    target = tmp_path / "features_0.npy"
    target.write_bytes(b"old")
    with pytest.raises(type(error)), _atomic.replacing(target) as temporary:
        with open(temporary, "wb") as file:
            file.write(b"half")
        raise error
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["features_0.npy"]


def test_replacing_keeps_the_permissions_of_the_old_file(tmp_path):
    target = tmp_path / "report.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    with _atomic.replacing(target):
        pass
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_an_open_reader_keeps_the_old_content(tmp_path):
    target = tmp_path / "features_0.npy"
    target.write_bytes(b"old")
    with open(target, "rb") as reader:
        with (
            _atomic.replacing(target) as temporary,
            open(temporary, "wb") as file,
        ):
            file.write(b"new")
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new"
