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
    # Per partition, its two series with the newest ts, newest first: row 0 the newest ts
    # each reached, row 1 their uids (0: none yet). Updated in place, batch by batch.
    leaders: dict[int, IntArray] = field(default_factory=dict)
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
            leaders = self.leaders.get(number)
            if leaders is None:
                leaders = self.leaders[number] = np.zeros((2, 2), np.int64)
            clock = _move_on(leaders, series[on], ts[on])
            if clock - self.swept.get(number, 0) >= self.ttl_ns // 8:
                self.swept[number] = clock
                evicted += table.evict_idle(clock - self.ttl_ns, number)
        return evicted

    def clock(self, partition: int) -> int:
        """The partition's eviction clock (0 until two of its series ticked)."""
        leaders = self.leaders.get(partition)
        return 0 if leaders is None else _clock(leaders)


def _by_partition(partition: npt.NDArray[np.int32]) -> list[tuple[int, slice | BoolArray]]:
    """Each partition of a batch with where its ticks are (all of them: the usual batch)."""
    if _one_value(partition):
        return [(int(partition[0]), slice(None))]
    return [(number, partition == number) for number in np.unique(partition).tolist()]


@kernel
def _one_value(values: npt.NDArray[np.int32]) -> bool:
    for value in values:  # noqa: SIM110 (Numba compiles no all() of a generator)
        if value != values[0]:
            return False
    return True


@kernel
def _move_on(leaders: IntArray, series: IntArray, ts: IntArray) -> int:
    """Fold accepted ticks (``series`` uids, in order) into a partition's ``leaders``;
    returns its clock. Series 2 counts once, with its 9:

    >>> leaders = np.zeros((2, 2), np.int64)
    >>> _move_on(leaders, np.array([1, 2, 2, 3]), np.array([5, 9, 8, 7]))
    7
    >>> leaders.tolist()  # [ts, ts], [uid, uid]
    [[9, 7], [2, 3]]
    """
    newest, uid = leaders[0], leaders[1]
    for tick in range(len(ts)):
        at, of = ts[tick], series[tick]
        if of == uid[0]:
            newest[0] = max(newest[0], at)
        elif of == uid[1]:
            newest[1] = max(newest[1], at)
            if newest[1] > newest[0]:  # it overtook the newest
                newest[0], newest[1], uid[0], uid[1] = newest[1], newest[0], uid[1], uid[0]
        elif uid[0] == 0 or at > newest[0]:
            newest[1], uid[1] = newest[0], uid[0]
            newest[0], uid[0] = at, of
        elif uid[1] == 0 or at > newest[1]:
            newest[1], uid[1] = at, of
    return _clock(leaders)


@kernel
def _clock(leaders: IntArray) -> int:
    return leaders[0, 1] if leaders[1, 1] != 0 else 0
