"""Per-series state in contiguous arrays, one row ("slot") per series.

A slot holds everything a series needs between ticks: its feature statistics, its
recurrent state (a flat float32 vector whose layout belongs to the model), and a
ring of its recent warm steps (standardised return, standardised level, timestamp)
used to train new models and to re-warm the recurrent state after a model swap.
Arrays grow by doubling; a series costs no Python objects beyond its name.

>>> table = SeriesTable(ring_length=4, state_size=3)
>>> table.slots_for(["A", "B", "A"]).tolist()
[0, 1, 0]
>>> len(table)
2
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.features import STATS_DTYPE

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class History:
    """Recent warm steps of some series, oldest first, left-aligned and padded.

    Row i holds ``length[i]`` valid steps; the rest of the row is zero.
    """

    z: Float32Array  # (n, steps)
    d: Float32Array
    ts: IntArray
    length: IntArray  # (n,)


class SeriesTable:
    """Slots, statistics, recurrent state and history rings of every known series."""

    def __init__(self, ring_length: int, state_size: int, capacity: int = 1024) -> None:
        if ring_length < 1:
            raise ValueError(f"ring_length must be >= 1, got {ring_length}")
        self.ring_length = ring_length
        self.slot_of: dict[str, int] = {}
        self.series: list[str] = []
        self.stats = np.zeros(capacity, STATS_DTYPE)
        self.recurrent = np.zeros((capacity, state_size), np.float32)
        self.ring_z = np.zeros((capacity, ring_length), np.float32)
        self.ring_d = np.zeros((capacity, ring_length), np.float32)
        self.ring_ts = np.zeros((capacity, ring_length), np.int64)
        self.ring_count = np.zeros(capacity, np.int64)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def capacity(self) -> int:
        return len(self.stats)

    def slots_for(self, series: list[str]) -> IntArray:
        """The slot of each series name, allocating slots for names never seen."""
        slot_of = self.slot_of
        slots = np.fromiter(
            (slot_of[s] if s in slot_of else self._allocate(s) for s in series),
            np.int64,
            len(series),
        )
        return slots

    def _allocate(self, series: str) -> int:
        slot = len(self.series)
        if slot == self.capacity:
            self._grow(2 * self.capacity)
        self.slot_of[series] = slot
        self.series.append(series)
        return slot

    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        for name in ("stats", "recurrent", "ring_z", "ring_d", "ring_ts", "ring_count"):
            array = getattr(self, name)
            padding = np.zeros((extra, *array.shape[1:]), array.dtype)
            setattr(self, name, np.concatenate([array, padding]))

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

    def active_slots(self) -> IntArray:
        return np.arange(len(self.series), dtype=np.int64)
