"""Idle series are evicted on each partition's own event-time clock.

>>> from forecaster.core.table import SeriesTable
>>> eviction = IdleEviction(ttl_ns=100)
>>> partition, series, ts = np.zeros(3, np.int32), np.array([1, 2, 1]), np.array([5, 9, 8])
>>> eviction.sweep(SeriesTable(ring_length=4, state_size=0), partition, series, ts)
0
>>> eviction.clock(0)  # series 1 reached 8, series 2 reached 9: both reached 8
8
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from forecaster.core.compiled import kernel
from forecaster.core.table import SeriesTable

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class IdleEviction:
    """Evicts series idle for ``ttl_ns`` of event time, on each partition's own clock, so a
    replay evicts as the live run did and a partition that lags behind the others loses
    nothing. A partition is swept each time its clock moved on by an eighth of the TTL, so
    memory stays bounded at a small cost per batch.

    The clock is the newest ts that *two distinct series* of the partition reached with
    accepted ticks: the second-newest of their last ts. So one tick, or one series with a
    broken clock, can never evict the others however far ahead it is (it cannot move the
    clock past the newest ts another series reached), nor stop the clock (the others
    drive it on). The price: a partition on which only one series still ticks keeps its
    idle series (within ``max_series``) until a second one ticks; but every rule
    that lets one series drive the clock alone lets that series, with a clock in the
    future, evict every other series. It takes two series with future clocks on one
    partition to do that here; live input refuses ticks ahead of the wall clock anyway.
    """

    ttl_ns: int
    # Per partition: the last ts and uid of its two series with the newest, newest first.
    leaders: dict[int, tuple[IntArray, IntArray]] = field(default_factory=dict)
    swept: dict[int, int] = field(default_factory=dict)

    def sweep(
        self,
        table: SeriesTable,
        partition: npt.NDArray[np.int32],
        series: IntArray,
        ts: IntArray,
    ) -> int:
        """Move the clocks on by accepted ticks (their ``partition``, ``series`` uid and
        ``ts``) and evict where due; returns how many series were evicted."""
        if self.ttl_ns <= 0 or not len(ts):
            return 0
        evicted = 0
        for number, on in _by_partition(partition):
            clock = self._advance(number, series[on], ts[on])
            if clock - self.swept.get(number, 0) >= self.ttl_ns // 8:
                self.swept[number] = clock
                evicted += table.evict_idle(clock - self.ttl_ns, number)
        return evicted

    def clock(self, partition: int) -> int:
        """The partition's eviction clock (0 until two of its series ticked)."""
        ts, _ = self.leaders.get(partition, (_NO_TS, _NO_TS))
        return int(ts[1]) if len(ts) == 2 else 0

    def _advance(self, partition: int, series: IntArray, ts: IntArray) -> int:
        known_ts, known_series = self.leaders.get(partition, (_NO_TS, _NO_TS))
        ts, series = np.concatenate((known_ts, ts)), np.concatenate((known_series, series))
        self.leaders[partition] = _leaders(ts, series)
        return self.clock(partition)


_NO_TS = np.zeros(0, np.int64)


def _by_partition(partition: npt.NDArray[np.int32]) -> list[tuple[int, slice | BoolArray]]:
    """Each partition of a batch with where its ticks are (all of them: the usual batch)."""
    first = int(partition[0])
    if (partition == first).all():
        return [(first, slice(None))]
    return [(number, partition == number) for number in np.unique(partition).tolist()]


@kernel
def _leaders(ts: IntArray, series: IntArray) -> tuple[IntArray, IntArray]:
    """Of the (at most) two distinct ``series`` that reached the newest ``ts``, each one's
    newest ts and the series, newest first (series 2 counts once, with its 9):

    >>> _leaders(np.array([5, 9, 8, 7]), np.array([1, 2, 2, 3]))
    (array([9, 7]), array([2, 3]))
    """
    first = np.argmax(ts)
    second = -1
    for index in range(len(ts)):
        if series[index] != series[first] and (second < 0 or ts[index] > ts[second]):
            second = index
    pick = np.array([first, second]) if second >= 0 else np.array([first])
    return ts[pick], series[pick]
