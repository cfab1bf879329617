"""A batch in progress: its per-tick outputs, filled in round by round, and the undo
records of its attempts (the whole batch, or each tick alone), so that a rollback can
put every series it touched back as it was.

>>> from forecaster.core.table import SeriesTable
>>> from forecaster.core.ticks import parse_messages
>>> table = SeriesTable(ring_length=4, state_size=0)
>>> work = PendingBatch.start(parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks)
>>> undo = work.begin(table)
>>> work.slots[:] = table.slots_for(["X"], work.ticks.partition, journal=undo.journal)
>>> len(table), work.abandon(table, 0), len(table)
(1, None, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from forecaster.core.engine.results import EngineResult, ForecastBatch, OrderReject
from forecaster.core.features import FeatureStep
from forecaster.core.table import Allocations, Backup, SeriesTable
from forecaster.core.ticks import TickColumns

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
# A round's warm steps: (slots, z, d, ts).
WarmSteps = tuple[IntArray, FloatArray, FloatArray, IntArray]


@dataclass(slots=True)
class Undo:
    """What one attempt (a whole batch, or one tick of it) overwrote, to put it back, and
    the warm steps it made, for the recorder at commit, and (while a model is in shadow)
    its warm rounds: batch index, slots and features, for the shadow at commit."""

    journal: Allocations
    rejects: int  # how many rejects the batch had before this attempt
    nonfinite: int
    backup: Backup | None = None
    warm: list[WarmSteps] = field(default_factory=list)
    rounds: list[tuple[IntArray, IntArray, FeatureStep]] = field(default_factory=list)

    def restore(self, table: SeriesTable) -> None:
        if self.backup is not None:
            table.restore(self.backup)
        table.unallocate(self.journal)


@dataclass(slots=True)
class PendingBatch:
    """A batch in progress: per-tick outputs, filled in round by round, and its undo records."""

    ticks: TickColumns
    slots: IntArray  # -1 where none was allocated
    forecast: FloatArray
    naive: BoolArray
    accepted: BoolArray
    previous_price: FloatArray
    previous_forecast: FloatArray
    lower: FloatArray
    upper: FloatArray
    previous_lower: FloatArray
    previous_upper: FloatArray
    rejects: list[OrderReject]
    undo: list[Undo]
    nonfinite: int = 0

    @classmethod
    def start(cls, ticks: TickColumns) -> PendingBatch:
        n = len(ticks)
        floats, flags, slots = np.zeros((7, n)), np.zeros((2, n), bool), np.empty(n, np.int64)
        floats[:3] = ticks.price  # forecast and interval: a tick's own price, until stepped
        flags[0] = True  # naive, until stepped
        slots.fill(-1)
        return cls(
            ticks=ticks,
            slots=slots,
            forecast=floats[0],
            naive=flags[0],
            accepted=flags[1],
            previous_price=floats[3],
            previous_forecast=floats[4],
            lower=floats[1],
            upper=floats[2],
            previous_lower=floats[5],
            previous_upper=floats[6],
            rejects=[],
            undo=[],
        )

    def kept(self) -> slice | IntArray:
        """Where the accepted ticks are: all of them (the usual batch), or their index."""
        return slice(None) if self.accepted.all() else np.flatnonzero(self.accepted)

    def warm_steps(self) -> list[WarmSteps]:
        """The warm steps of every attempt, round by round, in order."""
        return [steps for undo in self.undo for steps in undo.warm]

    def begin(self, table: SeriesTable) -> Undo:
        """A new undo record, for the attempt that starts now."""
        self.undo.append(Undo(table.journal(), len(self.rejects), self.nonfinite))
        return self.undo[-1]

    def abandon(self, table: SeriesTable, index: int) -> None:
        """Undo the last attempt, that of tick ``index``, and forget its outputs."""
        undo = self.undo.pop()
        undo.restore(table)
        del self.rejects[undo.rejects :]
        self.nonfinite = undo.nonfinite
        self.slots[index], self.accepted[index], self.naive[index] = -1, False, True
        self.forecast[index] = self.lower[index] = self.upper[index] = self.ticks.price[index]
        self.previous_price[index] = self.previous_forecast[index] = 0.0
        self.previous_lower[index] = self.previous_upper[index] = 0.0

    def result(self, version: str) -> EngineResult:
        keep = self.kept()
        ticks = self.ticks if isinstance(keep, slice) else self.ticks.take(keep)
        forecasts = ForecastBatch(
            ticks,
            self.forecast[keep],
            self.naive[keep],
            version,
            self.previous_price[keep],
            self.previous_forecast[keep],
            self.lower[keep],
            self.upper[keep],
            self.previous_lower[keep],
            self.previous_upper[keep],
        )
        rejects = sorted(self.rejects, key=lambda reject: reject.index)
        return EngineResult(forecasts, rejects, self.nonfinite)
