"""Per-series state in contiguous arrays, one row ("slot") per series.

A slot holds everything a series needs between ticks: its feature statistics, the
calibration of its prediction intervals, its recurrent state (a flat float32 vector
whose layout belongs to the model), and a ring of its recent warm steps (standardised
return, standardised level, timestamp) used to train new models and to re-warm the
recurrent state after a model swap, five bytes a step (``forecaster.core.ring``).
Each slot also records the source partition its series lives on, so the state of a
partition can be taken out (revoke, checkpoint) and put back (assign, restore).
Arrays grow by doubling and freed slots are reused; a series costs no Python
objects beyond its name. Each allocation also gets a ``uid`` never given to another
series of this table, so what is keyed by it (training data) cannot mix up two series
that used one slot in turn.

>>> table = SeriesTable(ring_length=4, state_size=3)
>>> table.slots_for(["A", "B", "A"]).tolist()
[0, 1, 0]
>>> snapshot = table.take(table.slots_of_partition(0))
>>> len(table), snapshot.series
(0, ['A', 'B'])

Idle series are evicted by the time of their last tick (here: before ts 5):

>>> table.stats["last_ts"][table.slots_for(["C", "D"])] = [3, 7]
>>> table.evict_idle(cutoff_ts=5), list(table.slot_of)
(1, ['D'])

What a batch overwrites can be put back: the slots it allocated (an ``Allocations``
journal), and the rows it steps and the ring cells it appends to (a ``Backup``):

>>> journal = table.journal()
>>> table.slots_for(["D", "E"], limit=1, journal=journal).tolist()  # E: over the limit
[0, -1]
>>> table.slots_for(["E"], journal=journal).tolist(), table.uid[[0, 1]].tolist()
([1], [4, 5])
>>> table.unallocate(journal)
>>> list(table.slot_of), table.uid[[0, 1]].tolist()
(['D'], [4, 0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import literal_unroll

from forecaster.core.compiled import kernel
from forecaster.core.features import STATS_DTYPE
from forecaster.core.intervals import new_calibration
from forecaster.core.ring import CELL_BYTES, Cells, RingCodec, encode_cell

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# Per-slot arrays, all indexed by slot on their first axis.
SLOT_ARRAYS = (
    "stats",
    "calibration",
    "last_forecast",
    "recurrent",
    "ring",
    "ring_newest_ts",
    "ring_track_ts",
    "ring_count",
    "partition",
)
# Per-slot arrays of the table alone (not in snapshots, so not in checkpoints).
TABLE_ARRAYS = (*SLOT_ARRAYS, "uid")
# What stepping a series overwrites besides its ring's cells (Backup).
STEPPED_ARRAYS = (
    "stats",
    "calibration",
    "last_forecast",
    "recurrent",
    "ring_newest_ts",
    "ring_track_ts",
    "ring_count",
)
_stepped_arrays = attrgetter(*STEPPED_ARRAYS)  # a table's, at C speed


@dataclass(frozen=True, slots=True)
class History:
    """Recent warm steps of some series, oldest first, left-aligned and padded.

    Row i holds ``length[i]`` valid steps; the rest of the row is zero.
    """

    z: Float32Array  # (n, steps)
    d: Float32Array
    ts: IntArray
    length: IntArray  # (n,)


@dataclass(frozen=True)
class TableSnapshot:
    """The state of some series, detached from any table (row i is ``series[i]``)."""

    series: list[str]
    stats: npt.NDArray[np.void]
    calibration: npt.NDArray[np.void]  # of the prediction intervals
    last_forecast: FloatArray
    recurrent: Float32Array
    ring: npt.NDArray[np.uint8]  # (series, ring_length, CELL_BYTES)
    ring_newest_ts: IntArray  # the time of each ring's newest step
    ring_track_ts: IntArray  # the same as the sum of the cells' gaps has it
    ring_count: IntArray
    partition: npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Backup:
    """Copies of what stepping some series may overwrite: the ``STEPPED_ARRAYS`` rows of
    their ``slots`` (in that order) and the ring ``cells`` (flat indices) their next
    appends write, with the cells' (z, d, ts)."""

    slots: IntArray
    rows: tuple[npt.NDArray[Any], ...]
    cells: IntArray
    ring: tuple[npt.NDArray[Any], ...]


@dataclass(slots=True)
class Allocations:
    """A journal of slot allocations: the table's free list and uid counter when it began,
    and every slot allocated since, in order (``SeriesTable.unallocate`` takes them back)."""

    series_length: int
    free_length: int
    next_uid: int
    slots: list[int] = field(default_factory=list)


class BackupArea:
    """Memory for a ``Backup``, reused from batch to batch.

    A batch's backup of 1,000 series is ~0.9 MB that lives until the batch is committed.
    Allocated afresh for every batch, it costs 1.2-1.3x the engine time of this reused
    area (``benchmarks/bench_step.py``): glibc trims the heap top between batches, so a
    fresh copy's pages are faulted in again every batch (666 faults per batch against 412).
    """

    def __init__(self) -> None:
        self._arrays: tuple[npt.NDArray[Any], ...] = ()

    def take(
        self, sources: tuple[npt.NDArray[Any], ...], indices: tuple[IntArray, ...]
    ) -> tuple[npt.NDArray[Any], ...]:
        """Each source taken at its index on its first axis, into this area (valid until
        its next use); one compiled call, where a call per array cost a one-tick batch
        more than its whole model step."""
        fits = len(self._arrays) == len(sources)
        if not (fits and _take_into(tuple(zip(sources, indices, self._arrays, strict=True)))):
            rooms = [2 * len(mine) for mine in self._arrays] if fits else [0] * len(sources)
            self._arrays = tuple(
                np.empty((max(len(index), room), *source.shape[1:]), source.dtype)
                for source, index, room in zip(sources, indices, rooms, strict=True)
            )
            _take_into(tuple(zip(sources, indices, self._arrays, strict=True)))
        return tuple(
            [mine[: len(index)] for mine, index in zip(self._arrays, indices, strict=True)]
        )


class SeriesTable:
    """Slots, statistics, recurrent state and history rings of every known series; ``clip``
    bounds the standardised features the rings hold."""

    def __init__(
        self, ring_length: int, state_size: int, capacity: int = 1024, clip: float = 8.0
    ) -> None:
        if ring_length < 1:
            raise ValueError(f"ring_length must be >= 1, got {ring_length}")
        self.ring_length = ring_length
        self.codec = RingCodec(clip)
        self.slot_of: dict[str, int] = {}
        self.series: list[str | None] = []  # by slot; None marks a free slot
        self._free: list[int] = []
        self.stats = np.zeros(capacity, STATS_DTYPE)
        self.calibration = new_calibration(capacity)
        self.last_forecast = np.zeros(capacity)  # by the model; 0 if none or naive
        self.recurrent = np.zeros((capacity, state_size), np.float32)
        self.ring = np.zeros((capacity, ring_length, CELL_BYTES), np.uint8)
        self.ring_newest_ts = np.zeros(capacity, np.int64)
        self.ring_track_ts = np.zeros(capacity, np.int64)
        self.ring_count = np.zeros(capacity, np.int64)
        self.partition = np.zeros(capacity, np.int32)
        self.uid = np.zeros(capacity, np.int64)  # 0 marks a free slot
        self._next_uid = 1

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def capacity(self) -> int:
        return len(self.stats)

    @property
    def state_size(self) -> int:
        return int(self.recurrent.shape[1])

    def slots_for(
        self,
        series: list[str],
        partition: npt.NDArray[np.int32] | None = None,
        *,
        limit: int = 0,
        journal: Allocations | None = None,
    ) -> IntArray:
        """The slot of each series name, allocating slots (on ``partition``) for new names.

        A new name gets -1 instead while the table holds ``limit`` series (0 = no limit);
        ``journal`` records the slots allocated.
        """
        slot_of = self.slot_of
        known = list(map(slot_of.get, series))  # the usual batch: every name known, at C speed
        if None not in known:
            return np.array(known, np.int64).reshape(len(series))
        partitions = repeat(0, len(series)) if partition is None else partition.tolist()
        return np.fromiter(
            (
                slot_of[s] if s in slot_of else self._allocate(s, p, limit, journal)
                for s, p in zip(series, partitions, strict=True)
            ),
            np.int64,
            len(series),
        )

    def _allocate(
        self, series: str, partition: int, limit: int, journal: Allocations | None
    ) -> int:
        if 0 < limit <= len(self.slot_of):
            return -1
        if self._free:
            slot = self._free.pop()
            self.series[slot] = series
        else:
            slot = len(self.series)
            if slot == self.capacity:
                self._grow(2 * self.capacity)
            self.series.append(series)
        self.slot_of[series] = slot
        self.partition[slot] = partition
        self.uid[slot] = self._next_uid
        self._next_uid += 1
        if journal is not None:
            journal.slots.append(slot)
        return slot

    def journal(self) -> Allocations:
        """A journal to pass to ``slots_for``, to take its allocations back later."""
        return Allocations(len(self.series), len(self._free), self._next_uid)

    def unallocate(self, journal: Allocations) -> None:
        """Free the slots ``journal`` recorded: names, free list, uids and rows are as before
        it began (the arrays keep their capacity). Nothing else may have freed or allocated
        slots since."""
        slots = journal.slots[::-1]
        for slot in slots:
            del self.slot_of[str(self.series[slot])]
        self._zero(np.array(slots, np.int64))
        del self.series[journal.series_length :]
        for slot in slots:
            if slot < journal.series_length:
                self.series[slot] = None
                self._free.append(slot)
        self._next_uid = journal.next_uid
        journal.slots.clear()

    def _grow(self, capacity: int) -> None:
        # Fresh zeroed memory, of which only the copied rows are written: the pages of the
        # spare capacity stay unmapped until a series uses them, so doubling costs no RSS.
        for name in TABLE_ARRAYS:
            setattr(self, name, grown_to(getattr(self, name), capacity))

    def active_slots(self) -> IntArray:
        return np.fromiter(self.slot_of.values(), np.int64, len(self.slot_of))

    def slots_of_partition(self, partition: int) -> IntArray:
        active = self.active_slots()
        on_partition: IntArray = active[self.partition[active] == partition]
        return on_partition

    def snapshot(self, slots: IntArray) -> TableSnapshot:
        """A copy of the state of ``slots`` (active slots), leaving them in place."""
        return TableSnapshot(
            series=[str(self.series[s]) for s in slots.tolist()],
            **{name: getattr(self, name)[slots].copy() for name in SLOT_ARRAYS},
        )

    def take(self, slots: IntArray) -> TableSnapshot:
        """Detach ``slots``: return their state and free them for other series."""
        snapshot = self.snapshot(slots)
        self._free_slots(slots)
        return snapshot

    def _free_slots(self, slots: IntArray) -> None:
        for slot in slots.tolist():
            del self.slot_of[str(self.series[slot])]
            self.series[slot] = None
            self._free.append(slot)
        self._zero(slots)

    def _zero(self, slots: IntArray) -> None:
        for name in TABLE_ARRAYS:
            getattr(self, name)[slots] = 0

    def evict_idle(self, cutoff_ts: int, partition: int = 0) -> int:
        """Drop every series of ``partition`` whose last tick is before ``cutoff_ts`` (epoch
        ns); returns how many. Their slots are reused by new series, so the arrays stay as
        large as the most series ever live at once, however many names come and go."""
        slots = self.slots_of_partition(partition)
        idle: IntArray = slots[self.stats["last_ts"][slots] < cutoff_ts]
        self._free_slots(idle)
        return len(idle)

    def put(self, snapshot: TableSnapshot) -> IntArray:
        """Attach the series of ``snapshot`` (replacing any state they had here)."""
        if snapshot.recurrent.shape[1] != self.state_size:
            size = snapshot.recurrent.shape[1]
            raise ValueError(f"snapshot state size {size} != {self.state_size}")
        if snapshot.ring.shape[1] != self.ring_length:
            raise ValueError(f"snapshot ring length {snapshot.ring.shape[1]} != {self.ring_length}")
        slots = self.slots_for(snapshot.series, snapshot.partition)
        for name in SLOT_ARRAYS:
            getattr(self, name)[slots] = getattr(snapshot, name)
        return slots

    def reset_recurrent(self, state_size: int) -> None:
        """Zero every recurrent state, sized for a model with ``state_size`` floats."""
        self.recurrent = np.zeros((self.capacity, state_size), np.float32)

    def backup(self, slots: IntArray, appends: IntArray, area: BackupArea | None = None) -> Backup:
        """Copies of what stepping (distinct) ``slots`` overwrites when ``slots[i]`` appends
        at most ``appends[i]`` steps to its ring; in ``area`` (valid until its next use),
        else in fresh arrays."""
        area = area or BackupArea()
        cells = self._next_cells(slots, appends)
        sources = (*_stepped_arrays(self), self._flat_ring())
        *rows, ring = area.take(sources, (slots,) * len(STEPPED_ARRAYS) + (cells,))
        return Backup(slots, tuple(rows), cells, (ring,))

    def restore(self, backup: Backup) -> None:
        """Put back what ``backup`` copied."""
        for name, values in zip(STEPPED_ARRAYS, backup.rows, strict=True):
            put_rows(getattr(self, name), backup.slots, values)
        (cells,) = backup.ring
        self._flat_ring()[backup.cells] = cells

    def _flat_ring(self) -> npt.NDArray[np.uint8]:
        """The rings as one column of cells (a view: they are C-contiguous), cell (slot,
        column) at row ``slot * ring_length + column``."""
        return self.ring.reshape(-1, CELL_BYTES)

    def _next_cells(self, slots: IntArray, appends: IntArray) -> IntArray:
        """Flat indices of the ring cells the next ``appends`` appends to ``slots`` write.

        >>> table = SeriesTable(ring_length=3, state_size=0)
        >>> table.ring_count[[0, 1]] = [2, 0]
        >>> table._next_cells(np.array([0, 1]), np.array([5, 1])).tolist()
        [2, 0, 1, 3]
        """
        return _next_cells(self.ring_count, slots, appends, self.ring_length)

    def append_history(self, slots: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        """Append one warm step to each (distinct) slot's ring.

        The step's gap is taken from the time the sum of the ring's gaps has reached (its
        track), so that the encoding's errors do not add up along the ring
        (``forecaster.core.ring``)."""
        _append(self.ring, self.ring_count, self.ring_track_ts, self.ring_newest_ts,
                slots, z, d, ts, self.codec.clip, self.codec.step)  # fmt: skip

    def history(self, slots: IntArray) -> History:
        """The ring contents of ``slots``, oldest step first."""
        count = self.ring_count[slots]
        length = np.minimum(count, self.ring_length)
        start = np.where(count > self.ring_length, count % self.ring_length, 0)
        steps = np.arange(self.ring_length)
        columns = (start[:, None] + steps[None, :]) % self.ring_length
        valid = steps[None, :] < length[:, None]
        z, d, gap = self.codec.decode(self.ring[slots[:, None], columns])
        gap = np.where(valid, gap, 0)
        # A step's time: the newest's (exact), less the gaps of every step after it.
        after = np.cumsum(gap[:, ::-1], axis=1)[:, ::-1] - gap
        return History(
            z=np.where(valid, z, 0).astype(np.float32),
            d=np.where(valid, d, 0).astype(np.float32),
            ts=np.where(valid, self.ring_newest_ts[slots, None] - after, 0),
            length=length,
        )


@kernel
def _next_cells(count: IntArray, slots: IntArray, appends: IntArray, length: int) -> IntArray:
    cells = np.empty(np.minimum(appends, length).sum(), np.int64)
    cell = 0
    for row in range(len(slots)):
        slot = slots[row]
        for nth in range(min(appends[row], length)):
            cells[cell] = slot * length + (count[slot] + nth) % length
            cell += 1
    return cells


@kernel
def _take_into(takes: tuple[tuple[npt.NDArray[Any], IntArray, npt.NDArray[Any]], ...]) -> bool:
    """For each (source, index, out): ``out[:len(index)] = source[index]``; False, with
    nothing copied, where an ``out`` has too few rows or rows of another shape."""
    for take in literal_unroll(takes):
        source, index, out = take
        if len(out) < len(index) or out.shape[1:] != source.shape[1:]:
            return False
    for take in literal_unroll(takes):
        source, index, out = take
        for row in range(len(index)):
            out[row] = source[index[row]]
    return True


@kernel
def _append(
    ring: Cells, count: IntArray, track: IntArray, newest: IntArray, slots: IntArray,
    z: FloatArray, d: FloatArray, ts: IntArray, clip: float, step: float,
) -> None:  # fmt: skip
    length = ring.shape[1]
    for row in range(len(slots)):
        slot = slots[row]
        first = count[slot] == 0
        cell = ring[slot, count[slot] % length]
        gap = encode_cell(z[row], d[row], 0 if first else ts[row] - track[slot], clip, step, cell)
        track[slot] = ts[row] if first else track[slot] + gap
        newest[slot] = ts[row]
        count[slot] += 1


def grown_to(array: npt.NDArray[Any], rows: int) -> npt.NDArray[Any]:
    """``array`` with zeroed rows added up to ``rows``."""
    larger = np.zeros((rows, *array.shape[1:]), array.dtype)
    larger[: len(array)] = array
    return larger


def put_rows(array: npt.NDArray[Any], slots: IntArray, values: npt.NDArray[Any]) -> None:
    """``array[slots] = values``, ~9x faster for the statistics' structured rows (NumPy's
    indexing copies those field by field)."""
    if array.ndim == 1:
        np.put(array, slots, values)
    else:
        array[slots] = values
