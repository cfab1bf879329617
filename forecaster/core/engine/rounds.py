"""Rounds: the ticks of a batch grouped so that each group touches each series at most
once, and can be stepped as one vectorised step across its series.

>>> slots = np.array([7, 3, 7, 7, 3])
>>> [index.tolist() for index in rounds_of(slots)]
[[0, 1], [2, 4], [3]]
>>> [array.tolist() for array in touched(slots, rounds_of(slots))]
[[3, 7], [2, 3]]
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def rounds_of(slots: IntArray) -> list[IntArray]:
    """Batch indices grouped by occurrence: round k has the k-th tick of each slot, in order."""
    if len(slots) <= 1:
        return [np.arange(len(slots))] if len(slots) else []
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    group_start = np.repeat(starts, np.diff(starts, append=len(ordered)))
    occurrence = np.empty(len(slots), np.int64)
    occurrence[order] = np.arange(len(ordered)) - group_start
    if occurrence.max() == 0:
        return [np.arange(len(slots))]
    by_round = np.argsort(occurrence, kind="stable")
    bounds = np.searchsorted(occurrence[by_round], np.arange(1, occurrence.max() + 1))
    return np.split(by_round, bounds)


def touched(slots: IntArray, rounds: list[IntArray]) -> tuple[IntArray, IntArray]:
    """The distinct slots of the ticks in ``rounds`` and how many ticks each has."""
    if len(rounds) == 1:
        return slots[rounds[0]], np.ones(len(rounds[0]), np.int64)
    return np.unique(slots[np.concatenate(rounds)], return_counts=True)


def row_blocks(rows: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of ``rows`` rows, how the engine steps them.

    >>> list(row_blocks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    return (slice(start, start + size) for start in range(0, rows, size))
