"""Per-partition state checkpoints, so that a restart resumes where the state was.

A checkpoint holds the state of every series of one source partition (statistics,
recurrent state, history ring, last forecast), the input offset it corresponds to
(every tick before it has been stepped and its forecast delivered), the version of the
model whose recurrent states it holds, and the feature parameters they were computed
with. Two stores keep them (``Checkpoints``): this module's CheckpointStore, a
directory for a single instance, and ``forecaster.state.changelog.ChangelogStore``, a
compacted Kafka topic that any instance of the group can restore from. Both hold the
same bytes (``encode``) and refuse the same defects (``decode``). Layout under
``state_dir``::

    partition-<n>/current.npz      the newest checkpoint
    partition-<n>/previous.npz     the one before, to fall back to

Writing one, step by step (as Quix Streams checkpoints its state stores):

1. Snapshot the partition's state right after a batch was delivered (the pipeline's
   commit step), so the state has stepped exactly the ticks before the offset, and
   every forecast before it is out.
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
and never restored (one of format 3 is read as format 4, ``forecaster.state.upgrade``).
So is one whose checksums hold but whose content could not be served (``decode`` lists
the checks): a malformed header, arrays of other names, dtypes
or shapes, series names that are empty, repeated or not UTF-8, negative counts, NaN or
infinity in any state, series of another partition. Nothing is ever unpickled, and the
arrays must be stored uncompressed, as ``encode`` writes them (no decompression bomb).

>>> import tempfile
>>> from forecaster.core.engine import Engine, EngineParams
>>> from forecaster.core.ticks import parse_messages
>>> engine = Engine(EngineParams())
>>> _ = engine.process(parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks)
>>> store = CheckpointStore(Path(tempfile.mkdtemp()), EngineParams(), Metrics())
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from zipfile import ZIP_STORED

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import EngineParams, PartitionState
from forecaster.core.features import STATS_DTYPE
from forecaster.core.intervals import CALIBRATION_DTYPE, INTERVAL_EXPERTS, KINDS
from forecaster.core.ring import CELL_BYTES, finite_gaps
from forecaster.core.table import SLOT_ARRAYS, TableSnapshot
from forecaster.durable import write_atomically
from forecaster.errors import ForecasterError, VersionNameError
from forecaster.ops.metrics import Metrics
from forecaster.retraining.registry import check_version, shown
from forecaster.state.upgrade import UPGRADED_FORMATS, upgraded

log = logging.getLogger(__name__)

# 3: series statistics hold the prediction intervals' calibration; 4: rings of five-byte
# cells (forecaster.core.ring), and the calibration's thresholds tracked by experts. A
# format 3 checkpoint is upgraded as it is read.
FORMAT = 4
CURRENT, PREVIOUS = "current.npz", "previous.npz"
HEADER = "header"
REFUSAL_REASONS = ("unreadable", "corrupt", "incompatible")
MAX_HEADER_INT = 2**62  # partitions, offsets and series counts are far below


def _float_fields(dtype: np.dtype[np.void]) -> tuple[str, ...]:
    return tuple(name for name in dtype.names or () if dtype[name].base.kind == "f")


STATS_FLOATS = _float_fields(STATS_DTYPE)
CALIBRATION_FLOATS = _float_fields(CALIBRATION_DTYPE)


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

    def load(self, partition: int, at_most: int | None = None) -> Checkpoint | None:
        """The newest checkpoint of ``partition`` that passes every check (and is at an
        offset of at most ``at_most``, if given); None if none does."""
        ...

    def close(self) -> None:
        """Release connections (the last checkpoints are written before, on revoke)."""
        ...


class CheckpointStore:
    """Checkpoints of the partitions of one input under ``root``; see the module docstring.

    ``save`` never raises on a disk problem: the service keeps forecasting, and the
    failure shows in the log and in ``checkpoint_failures``.
    """

    def __init__(self, root: Path, params: EngineParams, metrics: Metrics) -> None:
        self.root = root
        self.params = params
        self.metrics = metrics

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

    def load(self, partition: int, at_most: int | None = None) -> Checkpoint | None:
        """The newest checkpoint of ``partition`` that passes every check (at an offset of at
        most ``at_most``, if given); None if none does."""
        for name in (CURRENT, PREVIOUS):
            path = self.folder(partition) / name
            if not _present(path):
                continue
            checkpoint = checked(path, str(path), partition, self.params, self.metrics)
            if checkpoint is not None and (at_most is None or checkpoint.offset <= at_most):
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
        if checkpoint.state.partition != partition:
            found = checkpoint.state.partition
            raise CheckpointError(origin, "incompatible", f"of partition {found}, not {partition}")
    except CheckpointError as refusal:
        metrics.checkpoint_refused.labels(refusal.reason).inc()
        log.warning("%s", refusal)
        return None
    return checkpoint


def _present(path: Path) -> bool:
    """Whether ``path`` exists; one that cannot even be looked at (permissions, I/O) is
    taken as present, so that reading it refuses it as unreadable, counted."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def write(folder: Path, data: bytes) -> None:
    """Steps 3-5 of the module docstring: temp file + fsync, rotate, rename, fsync dir."""
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / CURRENT, data, previous=folder / PREVIOUS)


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
        "sha256": digest(arrays),
    }
    buffer = io.BytesIO()
    arrays[HEADER] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def decode(data: bytes | Path, params: EngineParams, origin: str = "") -> Checkpoint:
    """Read and check a checkpoint, its bytes or its file (``origin`` names it in errors);
    CheckpointError if it cannot be trusted.

    Refused as *unreadable*: not an uncompressed ``.npz`` of plain arrays with a JSON
    header. *incompatible*: another format, feature parameters or ring length. *corrupt*:
    arrays that fail their SHA-256, or that hold what the engine cannot step on: header
    fields of the wrong type or negative, arrays missing, extra, of another dtype or shape,
    series names empty, repeated or not UTF-8, negative ring counts or statistics that are
    counts, NaN or infinity in statistics, recurrent states, rings or last forecasts,
    series of another partition than the header's.
    """
    arrays, header = _read(data, origin)
    if header.get("format") not in (FORMAT, *UPGRADED_FORMATS):
        raise CheckpointError(origin, "incompatible", f"not a checkpoint of format {FORMAT} "
                              f"(nor of {UPGRADED_FORMATS}, which are upgraded)")  # fmt: skip
    if header.get("sha256") != digest(arrays):
        raise CheckpointError(origin, "corrupt", "arrays do not match their SHA-256")
    wanted = {"features": params.features.to_dict(), "ring_length": params.ring_length}
    found = {name: header.get(name) for name in wanted}
    if found != wanted:
        raise CheckpointError(origin, "incompatible", f"made with {found}, serving {wanted}")
    try:
        fields = _Header.of(header)
        if header["format"] != FORMAT:
            arrays = upgraded(arrays, params.features.clip)
        snapshot = _snapshot(arrays, fields.series, params.ring_length)
        if (snapshot.partition != fields.partition).any():
            raise ValueError(f"holds series of other partitions than {fields.partition}")
    except ValueError as exc:
        raise CheckpointError(origin, "corrupt", str(exc)) from exc
    state = PartitionState(fields.partition, fields.model_version, snapshot)
    return Checkpoint(state, fields.offset)


def _read(data: bytes | Path, origin: str) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """The arrays and the JSON header of an ``.npz``; CheckpointError (unreadable) if it is
    not one, holds pickles, or has compressed members."""
    file = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with np.load(file, allow_pickle=False) as npz:
            compressed = [i.filename for i in npz.zip.infolist() if i.compress_type != ZIP_STORED]
            if compressed:
                raise ValueError(f"compressed members {compressed[:3]}")
            arrays = {name: npz[name] for name in npz.files}
        header = json.loads(arrays.pop(HEADER).tobytes())
        if not isinstance(header, dict):
            raise ValueError("the header is no JSON object")
    except Exception as exc:  # numpy, zipfile and json raise many kinds on hostile bytes
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise CheckpointError(origin, "unreadable", detail) from exc
    return arrays, header


@dataclass(frozen=True)
class _Header:
    """The header fields a restore uses, checked."""

    partition: int
    offset: int
    series: int
    model_version: str

    COUNTS = ("partition", "offset", "series")

    @classmethod
    def of(cls, header: dict[str, Any]) -> _Header:
        """ValueError unless every field is of its type and in range."""
        partition, offset, series = (_count(header, name) for name in cls.COUNTS)
        try:
            version = check_version(header.get("model_version"))
        except VersionNameError as exc:
            raise ValueError(f"header field model_version: {exc}") from exc
        return cls(partition, offset, series, version)


def _count(header: dict[str, Any], name: str) -> int:
    value = header.get(name)
    if type(value) is not int or not 0 <= value <= MAX_HEADER_INT:
        raise ValueError(f"header field {name} is {shown(value)}, not an integer >= 0")
    return value


def _snapshot(arrays: dict[str, npt.NDArray[Any]], count: int, ring_length: int) -> TableSnapshot:
    """The snapshot the arrays hold; ValueError if the engine could not step on it."""
    _check_layout(arrays, count, ring_length)
    series = _series_names(arrays["series_utf8"], arrays["series_bytes"])
    _check_values(arrays)
    return TableSnapshot(series=series, **{name: arrays[name] for name in SLOT_ARRAYS})


def _layout(count: int, ring_length: int) -> dict[str, tuple[np.dtype[Any], tuple[int, ...]]]:
    """The dtype and shape of every array of a checkpoint of ``count`` series (-1: any)."""
    return {
        "series_utf8": (np.dtype(np.uint8), (-1,)),
        "series_bytes": (np.dtype(np.int64), (count,)),
        "stats": (STATS_DTYPE, (count,)),
        "calibration": (CALIBRATION_DTYPE, (count,)),
        "last_forecast": (np.dtype(np.float64), (count,)),
        "recurrent": (np.dtype(np.float32), (count, -1)),
        "ring": (np.dtype(np.uint8), (count, ring_length, CELL_BYTES)),
        "ring_newest_ts": (np.dtype(np.int64), (count,)),
        "ring_track_ts": (np.dtype(np.int64), (count,)),
        "ring_count": (np.dtype(np.int64), (count,)),
        "partition": (np.dtype(np.int32), (count,)),
    }


def _check_layout(arrays: dict[str, npt.NDArray[Any]], count: int, ring_length: int) -> None:
    layout = _layout(count, ring_length)
    if set(arrays) != set(layout):
        raise ValueError(f"holds arrays {sorted(arrays)[:12]}, not {sorted(layout)}")
    for name, (dtype, shape) in layout.items():
        array = arrays[name]
        if array.dtype != dtype:
            raise ValueError(f"{name} is of dtype {array.dtype}, not {dtype}")
        fits = len(array.shape) == len(shape) and all(
            want in (-1, got) for got, want in zip(array.shape, shape, strict=True)
        )
        if not fits:
            raise ValueError(f"{name} has shape {array.shape}, not {shape} (-1: any)")


def _series_names(utf8: npt.NDArray[np.uint8], lengths: npt.NDArray[np.int64]) -> list[str]:
    """The series names: each non-empty, strict UTF-8 (Unicode scalar values only), unique."""
    if len(lengths) and (lengths.min() < 1 or lengths.max() > len(utf8)):
        raise ValueError("a series name is empty or longer than all names together")
    if int(lengths.sum()) != len(utf8):
        raise ValueError(f"series names of {int(lengths.sum())} bytes in {len(utf8)}")
    text, ends = utf8.tobytes(), np.cumsum(lengths).tolist()
    try:
        names = [text[start:end].decode() for start, end in zip([0, *ends], ends, strict=False)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"a series name is not UTF-8: {exc.reason}") from exc
    if len(set(names)) != len(names):
        raise ValueError("series names repeat")
    return names


def _check_values(arrays: dict[str, npt.NDArray[Any]]) -> None:
    """No NaN or infinity anywhere, no negative count, price or variance, no expert that
    is not one."""
    stats, calibration = arrays["stats"], arrays["calibration"]
    real = {f"stats.{name}": stats[name] for name in STATS_FLOATS}
    real |= {f"calibration.{name}": calibration[name] for name in CALIBRATION_FLOATS}
    real |= {name: arrays[name] for name in ("last_forecast", "recurrent")}
    for name, values in real.items():
        if not np.isfinite(values).all():
            raise ValueError(f"{name} holds NaN or infinity")
    if not finite_gaps(arrays["ring"]):
        raise ValueError("ring holds a gap of NaN or infinity")
    signed = {"ring_count": arrays["ring_count"]}
    signed |= {f"stats.{name}": stats[name] for name in ("n_returns", "last_price", "scale_sq")}
    for kind in KINDS:
        signed |= {f"calibration.{kind}_{name}": calibration[f"{kind}_{name}"]
                   for name in ("fast", "slow", "var", "count")}  # fmt: skip
    for name, values in signed.items():
        if (values < 0).any():
            raise ValueError(f"{name} holds negative values")
    for kind in KINDS:
        best = calibration[f"{kind}_best"]
        if ((best < 0) | (best >= INTERVAL_EXPERTS)).any():
            raise ValueError(f"calibration.{kind}_best names no expert")


def _arrays(snapshot: TableSnapshot) -> dict[str, npt.NDArray[Any]]:
    names = [name.encode() for name in snapshot.series]
    return {
        "series_utf8": np.frombuffer(b"".join(names), np.uint8),
        "series_bytes": np.array([len(name) for name in names], np.int64),
        **{name: getattr(snapshot, name) for name in SLOT_ARRAYS},
    }


def digest(arrays: dict[str, npt.NDArray[Any]]) -> str:
    """The SHA-256 of ``arrays``: names, dtypes, shapes and contents."""
    sha = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"{name}:{array.dtype.descr}:{array.shape};".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()
