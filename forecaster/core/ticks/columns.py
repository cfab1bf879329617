"""A parsed batch: its valid ticks as columns, its rejects, and the way back to raw bytes.

>>> ticks = empty_columns()
>>> len(ticks), len(concat_columns([ticks, ticks]))
(0, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.ticks.format import RejectReason

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that is not a valid tick: where it was, what it was, and why."""

    position: int
    raw: bytes
    reason: RejectReason
    detail: str


@dataclass(slots=True)
class TickColumns:
    """Valid ticks of one batch as columns; ``position`` indexes the source batch."""

    position: IntArray
    series: list[str]
    ts: IntArray  # epoch nanoseconds, UTC
    price: FloatArray
    volume: FloatArray  # NaN where absent
    partition: npt.NDArray[np.int32]  # source partition (0 for files)

    def __len__(self) -> int:
        return len(self.series)

    def take(self, index: npt.NDArray[np.intp]) -> TickColumns:
        """The rows at ``index``, in that order."""
        return TickColumns(
            position=self.position[index],
            series=pick(self.series, index),
            ts=self.ts[index],
            price=self.price[index],
            volume=self.volume[index],
            partition=self.partition[index],
        )


@dataclass(slots=True)
class ParsedBatch:
    """One source batch after parsing: valid ticks, rejects, and a way back to the raw bytes."""

    ticks: TickColumns
    rejects: list[Rejected]
    received: int
    raw_of: Callable[[int], bytes] = field(repr=False)


def empty_columns() -> TickColumns:
    return TickColumns(
        position=np.empty(0, np.int64),
        series=[],
        ts=np.empty(0, np.int64),
        price=np.empty(0, np.float64),
        volume=np.empty(0, np.float64),
        partition=np.empty(0, np.int32),
    )


def concat_columns(parts: list[TickColumns]) -> TickColumns:
    """The rows of ``parts``, one after the other."""
    return TickColumns(
        position=np.concatenate([p.position for p in parts]),
        series=[name for p in parts for name in p.series],
        ts=np.concatenate([p.ts for p in parts]),
        price=np.concatenate([p.price for p in parts]),
        volume=np.concatenate([p.volume for p in parts]),
        partition=np.concatenate([p.partition for p in parts]),
    )


def pick(values: list[Any], index: npt.NDArray[np.intp]) -> list[Any]:
    """The items of a list at ``index``, as numpy indexing gives an array's.

    >>> pick(["a", "b", "c"], np.array([2, 0]))
    ['c', 'a']
    """
    return list(map(values.__getitem__, index.tolist()))
