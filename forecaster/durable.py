"""Files whose loss or tearing matters, written so that a crash or power cut leaves the old
file or the new one, whole, never a mix:

1. write the bytes to a temporary file beside the target, then flush and fsync it;
2. optionally keep the file it replaces, under another name (a rename);
3. rename the temporary file onto the target (atomic within one file system);
4. fsync the directory, so that the renames themselves survive a power cut.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> write_atomically(folder / "a.json", b"{}")
>>> write_atomically(folder / "a.json", b"[]", previous=folder / "a.old.json")
>>> (folder / "a.json").read_bytes(), (folder / "a.old.json").read_bytes()
(b'[]', b'{}')
>>> sorted(p.name for p in folder.iterdir())
['a.json', 'a.old.json']
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_atomically(path: Path, data: bytes, previous: Path | None = None) -> None:
    """Replace ``path`` with ``data`` in the steps above; OSError if any fails, and then no
    temporary file is left behind."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with temporary.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
    sync_directory(path.parent)


def sync_directory(folder: Path) -> None:
    """fsync ``folder``: its entries (new names, renames) reach the disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
