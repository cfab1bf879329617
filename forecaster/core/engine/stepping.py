"""How one batch is stepped: series mapped to slots, then the ticks stepped in rounds
(``rounds``), every round one vectorised feature and model step across its series, in
blocks of ``block_rows``. Or, if that raised, tick by tick, each under its own undo
record, so that only a tick whose own step raises is rejected (internal_error).

A tick whose ts is not after its series' last accepted ts is rejected, not stepped, and
so is a tick of a new series while ``max_series`` series are held. A tick whose model
output (prediction, recurrent state or forecast) is not finite gets the naive forecast,
and that series' recurrent state starts again from zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.compiled import all_finite, kernel
from forecaster.core.engine.params import EngineParams
from forecaster.core.engine.pending import PendingBatch, Undo
from forecaster.core.engine.results import OrderReject
from forecaster.core.engine.rounds import rounds_of, row_blocks, touched
from forecaster.core.features import FeatureConstants, FeatureStep, advance_row, model_inputs
from forecaster.core.intervals import KernelParams, issue_row, observe_row
from forecaster.core.skill import calibrate
from forecaster.core.table import BackupArea, SeriesTable
from forecaster.core.ticks import RejectReason
from forecaster.faults import internal_error_detail, log_internal_error
from forecaster.model.stepper import Stepper

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Stepping:
    """Steps pending batches through ``table`` and ``model`` (None: naive forecasts only),
    keeping each warm step for the recorder if ``keep_warm``."""

    table: SeriesTable
    params: EngineParams
    model: Stepper | None
    keep_warm: bool
    backup_area: BackupArea  # of the batch stepped together, reused
    keep_rounds: bool = False  # keep each warm round's features, for a model in shadow

    def together(self, work: PendingBatch) -> None:
        """Step the whole batch in rounds, under one undo record."""
        undo = work.begin(self.table)
        ticks = work.ticks
        work.slots[:] = self._slots_for(ticks.series, ticks.partition, undo)
        rounds = self._rounds_of_admitted(work, np.arange(len(ticks)))
        if not rounds:
            return
        slots, appends = touched(work.slots, rounds)
        undo.backup = self.table.backup(slots, appends, self.backup_area)
        for index in rounds:
            for block in row_blocks(len(index), self.params.block_rows):
                self._step_round(work, index[block])

    def singly(self, work: PendingBatch) -> None:
        """Step the batch tick by tick, each under its own undo record; a tick whose step
        raises is rolled back and rejected."""
        for index in range(len(work.ticks)):
            try:
                self._step_one(work, index)
            except Exception as exc:
                work.abandon(self.table, index)
                log_internal_error("stepping a tick", exc)
                work.rejects.append(
                    OrderReject(index, RejectReason.INTERNAL_ERROR, internal_error_detail(exc))
                )

    def _step_one(self, work: PendingBatch, index: int) -> None:
        undo = work.begin(self.table)
        ticks, at = work.ticks, slice(index, index + 1)
        work.slots[at] = self._slots_for(ticks.series[at], ticks.partition[at], undo)
        admitted = self._rounds_of_admitted(work, np.arange(index, index + 1))
        if admitted:
            (rows,) = admitted
            undo.backup = self.table.backup(work.slots[rows], np.ones(1, np.int64))
            self._step_round(work, rows)

    def _slots_for(
        self, series: list[str], partition: npt.NDArray[np.int32], undo: Undo
    ) -> IntArray:
        limit = self.params.max_series
        return self.table.slots_for(series, partition, limit=limit, journal=undo.journal)

    def _rounds_of_admitted(self, work: PendingBatch, index: IntArray) -> list[IntArray]:
        """The rounds of the ticks at ``index`` that have a slot; the others are rejected."""
        slots = work.slots[index]
        if slots.min(initial=0) < 0:
            refused = slots < 0
            work.rejects.extend(_limit_rejects(index[refused], self.params.max_series))
            index, slots = index[~refused], slots[~refused]
        return [index[rows] for rows in rounds_of(slots)]

    def _step_round(self, work: PendingBatch, index: IntArray) -> None:
        """Step the ticks at ``index``, which belong to distinct series (a round, or a block
        of one): a compiled call each side of the model's step."""
        table, params, ticks = self.table, self.params, work.ticks
        slots, step = work.slots[index], FeatureStep.empty(len(index))
        if not _open_round(
            table.stats, table.calibration, table.last_forecast, slots, index, ticks.ts,
            ticks.price, params.features.constants, params.intervals.constants, work.accepted,
            work.previous_price, work.previous_forecast, work.previous_lower,
            work.previous_upper, step.z, step.d, step.scale, step.warm,
        ):  # fmt: skip
            in_order = work.accepted[index]
            out = index[~in_order]
            last_ts = table.stats["last_ts"][slots[~in_order]]
            work.rejects.extend(_order_rejects(out, ticks.ts[out], last_ts))
            index, slots, step = index[in_order], slots[in_order], step.take(in_order)
        if step.warm.all():
            self._step_model(work, index, slots, step)
        elif step.warm.any():
            self._step_model(work, index[step.warm], slots[step.warm], step.take(step.warm))
        _close_round(table.calibration, table.last_forecast, slots, index, work.naive,
                     work.forecast, params.intervals.q0, work.lower, work.upper)  # fmt: skip

    def _step_model(
        self, work: PendingBatch, index: IntArray, slots: IntArray, step: FeatureStep
    ) -> None:
        """Append the warm steps to the rings (keeping them for the recorder) and, with a
        model, step it and forecast from its prediction."""
        ts = work.ticks.ts[index]
        self.table.append_history(slots, step.z, step.d, ts)
        if self.keep_warm:
            work.undo[-1].warm.append((slots, step.z, step.d, ts))
        if self.keep_rounds:
            work.undo[-1].rounds.append((index, slots, step))
        if self.model is not None:
            self._forecast(self.model, work, index, slots, step)

    def _forecast(
        self,
        model: Stepper,
        work: PendingBatch,
        index: IntArray,
        slots: IntArray,
        step: FeatureStep,
    ) -> None:
        """Step the model; forecast from its prediction, or naive where any of its output
        is not finite (that series' recurrent state then starts again from zeros)."""
        state = SeriesState(self.table.recurrent, self.table.stats)
        ts, price = work.ticks.ts[index], work.ticks.price[index]
        forecast, failed = forecast_step(model, state, slots, step, ts=ts, price=price)
        work.forecast[index] = forecast
        work.naive[index] = failed
        work.nonfinite += int(np.count_nonzero(failed))


@dataclass(frozen=True)
class SeriesState:
    """What a model's forecasts carry from tick to tick, by slot: its recurrent states and
    the statistics holding each series' calibration record (``forecaster.core.skill``)."""

    recurrent: Float32Array
    stats: npt.NDArray[np.void]


def forecast_step(
    model: Stepper,
    state: SeriesState,
    slots: IntArray,
    step: FeatureStep,
    *,
    ts: IntArray,
    price: FloatArray,
) -> tuple[FloatArray, BoolArray]:
    """Step ``model`` for distinct ``slots`` of ``state`` (updated in place) on this tick's
    features; the forecasts (the price where it failed) and where it failed: any output
    not finite, after which that series' recurrent state starts again from zeros."""
    inputs = model_inputs(step.z, step.d, ts)
    prediction, recurrent = model.step(inputs, state.recurrent[slots])
    forecast, failed = np.empty(len(slots)), np.empty(len(slots), bool)
    _forecasts(state.stats, state.recurrent, slots, step.z, step.scale, price, inputs,
               prediction, recurrent, forecast, failed)  # fmt: skip
    return forecast, failed


@kernel
def _forecasts(
    stats: npt.NDArray[np.void], table_recurrent: Float32Array, slots: IntArray, z: FloatArray,
    scale: FloatArray, price: FloatArray, inputs: Float32Array, prediction: Float32Array,
    recurrent: Float32Array, forecast: FloatArray, failed: BoolArray,
) -> None:  # fmt: skip
    """From the model's ``prediction`` and ``recurrent`` states of each row: its forecast,
    through its skill head (``calibrate``), and its state, stored at its slot; where any
    of those is not finite, the price and a state of zeros."""
    usable = np.empty(len(slots))
    for row in range(len(slots)):
        failed[row] = not (np.isfinite(prediction[row]) and all_finite(recurrent[row]))
        usable[row] = np.nan if failed[row] else prediction[row]
    trusted = calibrate(stats, slots, z, usable, inputs)
    for row in range(len(slots)):
        forecast[row] = price[row] * np.exp(scale[row] * trusted[row])
        failed[row] |= not np.isfinite(forecast[row])
        if failed[row]:
            forecast[row] = price[row]
            recurrent[row] = 0.0
        table_recurrent[slots[row]] = recurrent[row]


@kernel
def _open_round(
    stats: npt.NDArray[np.void], calibration: npt.NDArray[np.void], last_forecast: FloatArray,
    slots: IntArray, index: IntArray, ts: IntArray, price: FloatArray,
    features: FeatureConstants, intervals: KernelParams, accepted: BoolArray,
    previous_price: FloatArray, previous_forecast: FloatArray, previous_lower: FloatArray,
    previous_upper: FloatArray, z: FloatArray, d: FloatArray, scale: FloatArray,
    warm: BoolArray,
) -> bool:  # fmt: skip
    """A round up to the model, tick by tick (its batch ``index``, its series' ``slots``):
    accepted if after its series' last accepted ts, with the series' previous price and
    forecast, the interval issued then scored (``observe_row``) and the features
    (``advance_row``). Returns whether every tick was; the others are left alone."""
    in_order = True
    for row in range(len(slots)):
        series, at = stats[slots[row]], index[row]
        if not (series.last_price == 0 or ts[at] > series.last_ts):
            in_order = False
            continue
        before = series.last_price, price[at], last_forecast[slots[row]]
        accepted[at] = True
        previous_price[at], previous_forecast[at] = before[0], before[2]
        scored = observe_row(calibration[slots[row]], before, intervals)
        previous_lower[at], previous_upper[at] = scored[0], scored[1]
        z[row], d[row], scale[row], warm[row] = advance_row(series, price[at], ts[at], features)
    return in_order


@kernel
def _close_round(
    calibration: npt.NDArray[np.void], last_forecast: FloatArray, slots: IntArray,
    index: IntArray, naive: BoolArray, forecast: FloatArray, q0: float, lower: FloatArray,
    upper: FloatArray,
) -> None:  # fmt: skip
    """A round after the model: each series' forecast kept, to score at its next tick (0
    where naive), and its interval issued (``issue_row``)."""
    for row in range(len(slots)):
        at = index[row]
        last_forecast[slots[row]] = 0.0 if naive[at] else forecast[at]
        lower[at], upper[at] = issue_row(calibration[slots[row]], forecast[at], naive[at], q0)


def rewarm(model: Stepper, table: SeriesTable, slots: IntArray, block_rows: int,
           recurrent: Float32Array) -> None:  # fmt: skip
    """Recompute ``recurrent`` (by slot) of ``slots`` by running ``model`` over their
    history rings, ``block_rows`` series at a time (a whole ring of 100,000 series is
    gigabytes); a state that is not finite starts from zeros."""
    for block in row_blocks(len(slots), block_rows):
        rows = slots[block]
        history = table.history(rows)
        x = model_inputs(history.z, history.d, history.ts)
        _, state = model.run(x, history.length)
        state[~np.isfinite(state).all(axis=1)] = 0.0
        recurrent[rows] = state


def _order_rejects(index: IntArray, ts: IntArray, last_ts: IntArray) -> list[OrderReject]:
    return [
        OrderReject(i, RejectReason.TS_DUPLICATE, "ts equals the series' last accepted ts")
        if t == last
        else OrderReject(
            i, RejectReason.TS_OUT_OF_ORDER, "ts is before the series' last accepted ts"
        )
        for i, t, last in zip(index.tolist(), ts.tolist(), last_ts.tolist(), strict=True)
    ]


def _limit_rejects(index: IntArray, max_series: int) -> list[OrderReject]:
    detail = f"a new series while {max_series} series are held (max_series)"
    return [OrderReject(i, RejectReason.SERIES_LIMIT, detail) for i in index.tolist()]
