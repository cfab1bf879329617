"""Per-partition state checkpoints, so that a restart resumes where the state was.

A checkpoint holds the state of every series of one source partition (statistics,
recurrent state, history ring, last forecast), the input offset it corresponds to
(every tick before it has been stepped and its forecast delivered), the version of the
model whose recurrent states it holds, and the feature parameters they were computed
with. Two stores keep them (``Checkpoints``): this module's CheckpointStore, a
directory for a single instance, and ``forecaster.io.changelog.ChangelogStore``, a
compacted Kafka topic that any instance of the group can restore from. Both hold the
same bytes (``encode``) and refuse the same defects (``decode``). Layout under
``state_dir``::

    partition-<n>/current.npz      the newest checkpoint
    partition-<n>/previous.npz     the one before, to fall back to

Writing one, step by step (as Quix Streams checkpoints its state stores):

1. Snapshot the partition's state right after a batch's offsets were committed, so the
   state has stepped exactly the ticks before the offset.
2. Serialise the arrays into an ``.npz`` (plain arrays: nothing is ever pickled), with a
   JSON header: format version, partition, offset, model version, feature parameters,
   ring length, series count, and the SHA-256 of every array.
3. Write it to a temporary file next to the target, flush and fsync it.
4. Rotate: ``current.npz`` becomes ``previous.npz`` (a rename).
5. Publish: the temporary file becomes ``current.npz`` (a rename); fsync the directory.

A crash at any step leaves ``current.npz`` or ``previous.npz`` whole. Restoring reads
``current.npz``, else ``previous.npz``; a file that is unreadable, truncated, fails its
checksum, has another format version, or was computed with other feature parameters or
ring length is refused (CheckpointError, a warning, the ``checkpoint_refused`` metric)
and never restored.

>>> import tempfile
>>> from forecaster.engine import Engine, EngineParams
>>> from forecaster.ticks import parse_messages
>>> engine = Engine(EngineParams())
>>> _ = engine.process(parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks)
>>> store = CheckpointStore(Path(tempfile.mkdtemp()), EngineParams())
>>> store.save(engine.snapshot_partition(0), offset=1)
True
>>> restored = store.load(0)
>>> restored.offset, restored.state.snapshot.series
(1, ['X'])
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from forecaster.engine import EngineParams, PartitionState
from forecaster.errors import ForecasterError
from forecaster.features import STATS_DTYPE
from forecaster.metrics import Metrics
from forecaster.state import SLOT_ARRAYS, TableSnapshot

log = logging.getLogger(__name__)

FORMAT = 2
CURRENT, PREVIOUS = "current.npz", "previous.npz"
HEADER = "header"
REFUSAL_REASONS = ("unreadable", "corrupt", "incompatible")


class CheckpointError(ForecasterError):
    """A checkpoint that must not be restored: ``reason`` is one of REFUSAL_REASONS."""

    def __init__(self, origin: str, reason: str, detail: str) -> None:
        super().__init__(f"checkpoint {origin} refused ({reason}): {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Checkpoint:
    """The state of a partition that has stepped every tick before ``offset``."""

    state: PartitionState
    offset: int


class Checkpoints(Protocol):
    """Where the checkpoints of an input's partitions are kept."""

    def save(self, state: PartitionState, offset: int) -> bool:
        """Keep ``state``, which has stepped every tick before ``offset``; False if that failed
        (logged and counted: the service keeps forecasting)."""
        ...

    def load(self, partition: int) -> Checkpoint | None:
        """The newest checkpoint of ``partition`` that passes every check; None if none does."""
        ...

    def close(self) -> None:
        """Release connections (the last checkpoints are written before, on revoke)."""
        ...


class CheckpointStore:
    """Checkpoints of the partitions of one input under ``root``; see the module docstring.

    ``save`` never raises on a disk problem: the service keeps forecasting, and the
    failure shows in the log and in ``checkpoint_failures``.
    """

    def __init__(self, root: Path, params: EngineParams, metrics: Metrics | None = None) -> None:
        self.root = root
        self.params = params
        self.metrics = metrics or Metrics()

    def folder(self, partition: int) -> Path:
        return self.root / f"partition-{partition}"

    def save(self, state: PartitionState, offset: int) -> bool:
        """Write ``state`` at ``offset`` atomically; False (logged, counted) if it failed."""
        started = time.perf_counter()
        try:
            write(self.folder(state.partition), encode(Checkpoint(state, offset), self.params))
        except OSError as exc:
            self.metrics.checkpoint_failures.inc()
            log.warning("checkpoint of partition %d at offset %d failed: %s",
                        state.partition, offset, exc)  # fmt: skip
            return False
        self.metrics.checkpoint_completed(time.perf_counter() - started)
        return True

    def load(self, partition: int) -> Checkpoint | None:
        """The newest checkpoint of ``partition`` that passes every check; None if none does."""
        for name in (CURRENT, PREVIOUS):
            path = self.folder(partition) / name
            if not path.exists():
                continue
            checkpoint = checked(path, str(path), partition, self.params, self.metrics)
            if checkpoint is not None:
                return checkpoint
        return None

    def close(self) -> None:
        """Nothing to release: every write is complete when ``save`` returns."""


def checked(
    data: bytes | Path, origin: str, partition: int, params: EngineParams, metrics: Metrics
) -> Checkpoint | None:
    """``decode(data)`` if it is a checkpoint of ``partition`` to trust, else None (a
    refusal is logged and counted in ``checkpoint_refused``)."""
    try:
        checkpoint = decode(data, params, origin)
    except CheckpointError as refusal:
        metrics.checkpoint_refused.labels(refusal.reason).inc()
        log.warning("%s", refusal)
        return None
    return checkpoint if checkpoint.state.partition == partition else None


def write(folder: Path, data: bytes) -> None:
    """Steps 3-5 of the module docstring: temp file + fsync, rotate, rename, fsync dir."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{CURRENT}.tmp"
    with temporary.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    current = folder / CURRENT
    if current.exists():
        os.replace(current, folder / PREVIOUS)
    os.replace(temporary, current)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def encode(checkpoint: Checkpoint, params: EngineParams) -> bytes:
    """The ``.npz`` bytes of ``checkpoint``: its arrays plus a JSON header."""
    arrays = _arrays(checkpoint.state.snapshot)
    state = checkpoint.state
    header = {
        "format": FORMAT,
        "partition": state.partition,
        "offset": checkpoint.offset,
        "model_version": state.model_version,
        "features": params.features.to_dict(),
        "ring_length": params.ring_length,
        "series": len(state.snapshot.series),
        "sha256": _digest(arrays),
    }
    buffer = io.BytesIO()
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def decode(data: bytes | Path, params: EngineParams, origin: str = "") -> Checkpoint:
    """Read and check a checkpoint, its bytes or its file (``origin`` names it in errors);
    CheckpointError if it cannot be trusted."""
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(file, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop(HEADER).tobytes())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(origin, "unreadable", str(exc) or type(exc).__name__) from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(origin, "incompatible", "not a checkpoint of format " + str(FORMAT))
    if header.get("sha256") != _digest(arrays):
        raise CheckpointError(origin, "corrupt", "arrays do not match their SHA-256")
    wanted = {"features": params.features.to_dict(), "ring_length": params.ring_length}
    found = {name: header.get(name) for name in wanted}
    if found != wanted:
        raise CheckpointError(origin, "incompatible", f"made with {found}, serving {wanted}")
    try:
        snapshot = _snapshot(arrays, int(header["series"]))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(origin, "corrupt", str(exc)) from exc
    state = PartitionState(int(header["partition"]), str(header["model_version"]), snapshot)
    return Checkpoint(state, int(header["offset"]))


def _arrays(snapshot: TableSnapshot) -> dict[str, npt.NDArray[Any]]:
    names = [name.encode() for name in snapshot.series]
    return {
        "series_utf8": np.frombuffer(b"".join(names), np.uint8),
        "series_bytes": np.array([len(name) for name in names], np.int64),
        **{name: getattr(snapshot, name) for name in SLOT_ARRAYS},
    }


def _snapshot(arrays: dict[str, npt.NDArray[Any]], count: int) -> TableSnapshot:
    text = arrays["series_utf8"].tobytes()
    ends = np.cumsum(arrays["series_bytes"]).tolist()
    series = [text[start:end].decode() for start, end in zip([0, *ends], ends, strict=False)]
    if len(series) != count or any(len(arrays[name]) != count for name in SLOT_ARRAYS):
        raise ValueError(f"arrays do not hold {count} series each")
    if arrays["stats"].dtype != STATS_DTYPE:
        raise ValueError(f"statistics of dtype {arrays['stats'].dtype}, not {STATS_DTYPE}")
    return TableSnapshot(series=series, **{name: arrays[name] for name in SLOT_ARRAYS})


def _digest(arrays: dict[str, npt.NDArray[Any]]) -> str:
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"{name}:{array.dtype.descr}:{array.shape};".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()
