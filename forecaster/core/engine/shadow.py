"""A model in shadow: stepped beside the serving model on the same warm ticks, from a
state of its own, its forecasts scored against the next price and never emitted.

The shadow steps when a batch is committed, on the features its warm rounds kept
(``Undo.rounds``), with the engine's own step (``stepping.forecast_step``): a batch
rolled back or stepped again never moves it, and a replay steps it as a live run does.
It starts from the state a swap to its model would leave: recurrent states re-warmed
from each series' history ring (``stepping.rewarm``), calibration records copied from
the serving ones. With ``background`` the re-warm runs off the serving loop, as a
swap's does (``rewarming``), and the shadow steps and scores from the commit its states
are ready at. A series it did not start with (new, evicted and back, or put back
from a moved partition) is stepped from zeros with a fresh record and never scored, so
that a cold start is never weighed against a warm one.

Each scored forecast is paired with the serving model's forecast of the same tick (the
price forecast from, where that one was naive) and with naive's, as absolute errors
relative to the price forecast from (``PairedErrors``), as live quality scores them.

>>> from forecaster.core.engine import Engine, EngineParams
>>> from forecaster.core.ticks import TickColumns, parse_messages
>>> from forecaster.model.spec import ModelSpec
>>> from forecaster.model.stepper import LayerWeights
>>> def constant(value: float, version: str) -> Stepper:  # predicts ``value`` every tick
...     spec = ModelSpec(cell="gru", layers=1, units=1, n_features=4)
...     layer = LayerWeights(np.zeros((4, 3), np.float32), np.zeros((1, 3), np.float32),
...                          np.zeros((2, 3), np.float32))
...     return Stepper(spec, version, [layer], np.zeros((1, 1), np.float32),
...                    np.full(1, value, np.float32))
>>> def ticks(start: int) -> TickColumns:
...     return parse_messages([f'{{"series":"X","ts":{t},"price":{100 + t % 3}}}'.encode()
...                            for t in range(start, start + 40)]).ticks
>>> engine = Engine(EngineParams(), constant(0.0, "serving"))
>>> _ = engine.process(ticks(1))
>>> engine.start_shadow(constant(0.5, "candidate"))  # X is known now: it will be scored
>>> emitted = engine.process(ticks(41)).forecasts
>>> _ = engine.commit()
>>> errors = engine.shadow.drain() if engine.shadow else PairedErrors.join([])
>>> len(errors) > 0, set(emitted.versions())  # scored, and only the serving model emits
(True, {'serving'})
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.engine.pending import PendingBatch
from forecaster.core.engine.rewarming import RewarmJob
from forecaster.core.engine.stepping import SeriesState, forecast_step, rewarm
from forecaster.core.features import FeatureStep, new_stats
from forecaster.core.table import SeriesTable
from forecaster.model.stepper import Stepper

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class PairedErrors:
    """Absolute errors, relative to the price forecast from, of the forecasts of the same
    ticks by the model in shadow, the serving model and naive."""

    candidate: FloatArray
    serving: FloatArray
    naive: FloatArray

    def __len__(self) -> int:
        return len(self.candidate)

    @classmethod
    def join(cls, parts: list[PairedErrors]) -> PairedErrors:
        """``parts`` end to end, in order."""
        columns = ([getattr(p, name) for p in parts] for name in ("candidate", "serving", "naive"))
        return cls(*(np.concatenate(column) if parts else np.zeros(0) for column in columns))


class ShadowModel:
    """``model`` stepped beside the serving model of ``table``'s series, its states
    re-warmed at once or (``background``) off the loop; ``close`` when it ends."""

    def __init__(
        self, model: Stepper, table: SeriesTable, block_rows: int, background: bool = False
    ) -> None:
        self.model = model
        self.warming = RewarmJob(model, table) if background else None  # until it starts
        recurrent = model.zero_state(table.capacity)
        if self.warming is None:
            rewarm(model, table, table.active_slots(), block_rows, recurrent)
        self._start(table, recurrent)
        self._errors: list[PairedErrors] = []

    def _start(self, table: SeriesTable, recurrent: npt.NDArray[np.float32]) -> None:
        """Follow the series of ``table`` from ``recurrent`` (by slot) on."""
        self.state = SeriesState(recurrent, table.stats.copy())
        self.last_forecast = np.zeros(table.capacity)  # its forecast at the series' last tick
        self.uid = np.where(table.uid > 0, table.uid, -1)  # the series each slot follows
        self.scored = table.uid > 0  # series followed since the start

    def close(self) -> None:
        """The shadow ends: stop its re-warm, if it still runs."""
        if self.warming is not None:
            self.warming.cancel()

    def follow(self, table: SeriesTable, work: PendingBatch) -> None:
        """Step the warm rounds of ``work``, a batch being committed, in order (while its
        states are re-warmed, hand them to the re-warm, and start once they are ready)."""
        if self.warming is not None:
            self._warm(table, work)
            return
        self._grow(table.capacity)
        for undo in work.undo:
            for index, slots, step in undo.rounds:
                self._step(table, work, index, slots, step)

    def _warm(self, table: SeriesTable, work: PendingBatch) -> None:
        assert self.warming is not None
        ts, rounds = work.ticks.ts, [r for undo in work.undo for r in undo.rounds]
        self.warming.follow([(slots, step.z, step.d, ts[index]) for index, slots, step in rounds])
        recurrent = self.warming.advance()
        if recurrent is not None:
            self.warming = None
            self._start(table, recurrent)

    def drain(self) -> PairedErrors:
        """The errors scored since the last drain, in order."""
        errors, self._errors = PairedErrors.join(self._errors), []
        return errors

    def _step(
        self, table: SeriesTable, work: PendingBatch, index: IntArray, slots: IntArray,
        step: FeatureStep,
    ) -> None:  # fmt: skip
        strangers = slots[self.uid[slots] != table.uid[slots]]
        if len(strangers):
            self._adopt(strangers, table.uid[strangers])
        price, before = work.ticks.price[index], work.previous_price[index]
        own = self.last_forecast[slots]
        scored = self.scored[slots] & (own > 0) & (before > 0)
        if scored.any():
            serving = work.previous_forecast[index][scored]
            self._score(own[scored], serving, before[scored], price[scored])
        ts = work.ticks.ts[index]
        forecast, _ = forecast_step(self.model, self.state, slots, step, ts=ts, price=price)
        self.last_forecast[slots] = forecast

    def _score(
        self, own: FloatArray, serving: FloatArray, before: FloatArray, price: FloatArray
    ) -> None:
        served = np.where(serving > 0, serving, before)  # 0: the serving forecast was naive
        self._errors.append(PairedErrors(
            np.abs(own - price) / before, np.abs(served - price) / before,
            np.abs(before - price) / before,
        ))  # fmt: skip

    def _adopt(self, slots: IntArray, uid: IntArray) -> None:
        """Follow new series at ``slots`` from zeros and a fresh record, unscored."""
        self.state.recurrent[slots] = 0.0
        self.state.stats[slots] = new_stats(len(slots))
        self.last_forecast[slots] = 0.0
        self.uid[slots] = uid
        self.scored[slots] = False

    def _grow(self, capacity: int) -> None:
        """Follow the table's growth (it doubles its arrays)."""
        extra = capacity - len(self.uid)
        if extra <= 0:
            return
        recurrent = np.zeros((extra, self.model.state_size), np.float32)
        self.state = SeriesState(np.concatenate([self.state.recurrent, recurrent]),
                                 np.concatenate([self.state.stats, new_stats(extra)]))  # fmt: skip
        self.last_forecast = np.concatenate([self.last_forecast, np.zeros(extra)])
        self.uid = np.concatenate([self.uid, np.full(extra, -1, np.int64)])
        self.scored = np.concatenate([self.scored, np.zeros(extra, bool)])
