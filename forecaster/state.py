"""Per-series state in contiguous arrays, one row ("slot") per series.

A slot holds everything a series needs between ticks: its feature statistics, its
recurrent state (a flat float32 vector whose layout belongs to the model), and a
ring of its recent warm steps (standardised return, standardised level, timestamp)
used to train new models and to re-warm the recurrent state after a model swap.
Each slot also records the source partition its series lives on, so the state of a
partition can be taken out (revoke, checkpoint) and put back (assign, restore).
Arrays grow by doubling and freed slots are reused; a series costs no Python
objects beyond its name.

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.features import STATS_DTYPE

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

# Per-slot arrays, all indexed by slot on their first axis.
SLOT_ARRAYS = (
    "stats",
    "last_forecast",
    "recurrent",
    "ring_z",
    "ring_d",
    "ring_ts",
    "ring_count",
    "partition",
)


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
    last_forecast: FloatArray
    recurrent: Float32Array
    ring_z: Float32Array
    ring_d: Float32Array
    ring_ts: IntArray
    ring_count: IntArray
    partition: npt.NDArray[np.int32]


class SeriesTable:
    """Slots, statistics, recurrent state and history rings of every known series."""

    def __init__(self, ring_length: int, state_size: int, capacity: int = 1024) -> None:
        if ring_length < 1:
            raise ValueError(f"ring_length must be >= 1, got {ring_length}")
        self.ring_length = ring_length
        self.slot_of: dict[str, int] = {}
        self.series: list[str | None] = []  # by slot; None marks a free slot
        self._free: list[int] = []
        self.stats = np.zeros(capacity, STATS_DTYPE)
        self.last_forecast = np.zeros(capacity)  # by the model; 0 if none or naive
        self.recurrent = np.zeros((capacity, state_size), np.float32)
        self.ring_z = np.zeros((capacity, ring_length), np.float32)
        self.ring_d = np.zeros((capacity, ring_length), np.float32)
        self.ring_ts = np.zeros((capacity, ring_length), np.int64)
        self.ring_count = np.zeros(capacity, np.int64)
        self.partition = np.zeros(capacity, np.int32)

    def __len__(self) -> int:
        return len(self.slot_of)

    @property
    def capacity(self) -> int:
        return len(self.stats)

    @property
    def state_size(self) -> int:
        return int(self.recurrent.shape[1])

    def slots_for(
        self, series: list[str], partition: npt.NDArray[np.int32] | None = None
    ) -> IntArray:
        """The slot of each series name, allocating slots (on ``partition``) for new names."""
        slot_of = self.slot_of
        if partition is None:
            return np.fromiter(
                (slot_of[s] if s in slot_of else self._allocate(s, 0) for s in series),
                np.int64,
                len(series),
            )
        return np.fromiter(
            (
                slot_of[s] if s in slot_of else self._allocate(s, p)
                for s, p in zip(series, partition.tolist(), strict=True)
            ),
            np.int64,
            len(series),
        )

    def _allocate(self, series: str, partition: int) -> int:
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
        return slot

    def _grow(self, capacity: int) -> None:
        # Fresh zeroed memory, of which only the copied rows are written: the pages of the
        # spare capacity stay unmapped until a series uses them, so doubling costs no RSS.
        used = self.capacity
        for name in SLOT_ARRAYS:
            array = getattr(self, name)
            grown = np.zeros((capacity, *array.shape[1:]), array.dtype)
            grown[:used] = array
            setattr(self, name, grown)

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
        for name in SLOT_ARRAYS:
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
        if snapshot.ring_z.shape[1] != self.ring_length:
            raise ValueError(
                f"snapshot ring length {snapshot.ring_z.shape[1]} != {self.ring_length}"
            )
        slots = self.slots_for(snapshot.series, snapshot.partition)
        for name in SLOT_ARRAYS:
            getattr(self, name)[slots] = getattr(snapshot, name)
        return slots

    def reset_recurrent(self, state_size: int) -> None:
        """Zero every recurrent state, sized for a model with ``state_size`` floats."""
        self.recurrent = np.zeros((self.capacity, state_size), np.float32)

    def append_history(self, slots: IntArray, z: FloatArray, d: FloatArray, ts: IntArray) -> None:
        """Append one warm step to each (distinct) slot's ring."""
        column = self.ring_count[slots] % self.ring_length
        self.ring_z[slots, column] = z
        self.ring_d[slots, column] = d
        self.ring_ts[slots, column] = ts
        self.ring_count[slots] += 1

    def history(self, slots: IntArray) -> History:
        """The ring contents of ``slots``, oldest step first."""
        count = self.ring_count[slots]
        length = np.minimum(count, self.ring_length)
        start = np.where(count > self.ring_length, count % self.ring_length, 0)
        steps = np.arange(self.ring_length)
        columns = (start[:, None] + steps[None, :]) % self.ring_length
        valid = steps[None, :] < length[:, None]
        rows = slots[:, None]
        return History(
            z=np.where(valid, self.ring_z[rows, columns], 0).astype(np.float32),
            d=np.where(valid, self.ring_d[rows, columns], 0).astype(np.float32),
            ts=np.where(valid, self.ring_ts[rows, columns], 0),
            length=length,
        )
