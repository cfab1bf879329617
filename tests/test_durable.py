"""Durable atomic writes (forecaster/durable.py): the old file or the new one, whole."""

import errno
import os
from pathlib import Path

import pytest

from forecaster import durable


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "promoted.json"
    durable.write_atomically(target, b'{"version": "a"}')

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        durable.write_atomically(target, b'{"version": "b"}')
    assert target.read_bytes() == b'{"version": "a"}'
    assert [p.name for p in tmp_path.iterdir()] == ["promoted.json"]


def test_every_write_and_rename_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    durable.write_atomically(tmp_path / "a", b"1", previous=tmp_path / "a.old")
    assert len(synced) == 2  # the file's bytes, then the directory's entries
