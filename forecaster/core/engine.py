"""The engine: valid ticks in, one forecast per accepted tick out.

Per batch the engine maps series to slots, then steps in *rounds*: round k holds the
k-th tick of every series that ticked k+1 times or more, so each round touches each
series at most once and every round is one vectorised step across all its series
(in blocks of ``block_rows`` series). Several ticks of one series are thereby stepped
in order.

A tick whose ts is not after its series' last accepted ts is rejected, not stepped,
and so is a tick of a new series while ``max_series`` series are held. A series with
less than ``min_history`` returns, or any series while no model is loaded, gets the
naive forecast (its last price), flagged ``model_version="naive"``; so does a tick whose
model output (prediction, recurrent state or forecast) is not finite, and that series'
recurrent state starts again from zeros (counted in ``EngineResult.nonfinite``).

A processed batch is *pending* until ``commit()`` makes it final (its warm steps go to
the recorder, idle series are evicted) or ``rollback()`` puts every series it touched
back as it was, which it can because stepping kept an undo record of what it
overwrote. If stepping a batch raises, the batch is rolled back and its ticks are
stepped one at a time, each with its own undo record, so that only a tick whose own
step raises is rejected (``internal_error``).

>>> from forecaster.core.ticks import parse_messages
>>> engine = Engine(EngineParams())
>>> ticks = parse_messages([b'{"series":"X","ts":1,"price":2.0}',
...                         b'{"series":"X","ts":1,"price":2.5}']).ticks
>>> result = engine.process(ticks)
>>> result.forecasts.forecast.tolist(), [r.reason.value for r in result.rejects]
([2.0], ['ts_duplicate'])
>>> engine.rollback()
>>> len(engine.table), engine.commit()
(0, 0)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from forecaster.core.features import (
    FEATURE_NAMES,
    FeatureParams,
    FeatureStep,
    advance,
    model_inputs,
)
from forecaster.core.skill import calibrate
from forecaster.core.table import (
    Allocations,
    Backup,
    BackupArea,
    SeriesTable,
    TableSnapshot,
    put_rows,
    take_rows,
)
from forecaster.core.ticks import RejectReason, TickColumns
from forecaster.faults import internal_error_detail, log_internal_error
from forecaster.model.stepper import Stepper

log = logging.getLogger(__name__)

NAIVE = "naive"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Called at each commit with (series, z, d, ts) of the batch's warm steps, each series'
# in order, e.g. to collect training data; series are SeriesTable uids, never reused.
StepRecorder = Callable[[IntArray, FloatArray, FloatArray, IntArray], None]


@dataclass(frozen=True)
class EngineParams:
    features: FeatureParams = field(default_factory=FeatureParams)
    ring_length: int = 128
    # A series whose last tick is this much older than its partition's newest tick is
    # evicted (its state dropped); 0 keeps every series.
    evict_ttl_ns: int = 0
    # A round (or re-warm) of more series is stepped in blocks of this many: a block's
    # temporaries stay in cache and are reused from malloc's heap. Whole rounds of
    # 100,000 series made ~50 MB arrays that were mapped and faulted in afresh on every
    # step, 6x slower per tick (see benchmarks/README.md).
    block_rows: int = 4096
    # The most series held at once; a tick of a new series beyond it is rejected
    # (series_limit) while the known series go on. 0 = no limit.
    max_series: int = 0

    def __post_init__(self) -> None:
        if self.block_rows < 1:
            raise ValueError(f"block_rows must be >= 1, got {self.block_rows}")
        if self.max_series < 0:
            raise ValueError(f"max_series must be >= 0, got {self.max_series}")


@dataclass(frozen=True)
class PartitionState:
    """The series state of one source partition, and the model whose states it holds."""

    partition: int
    model_version: str
    snapshot: TableSnapshot


@dataclass(frozen=True, slots=True)
class OrderReject:
    """A tick the engine refused: ``index`` into the batch's TickColumns."""

    index: int
    reason: RejectReason
    detail: str


@dataclass(slots=True)
class ForecastBatch:
    """Forecasts of one batch, in the batch's tick order.

    ``model_version`` made every row whose ``naive`` flag is False; the rest are naive.
    """

    ticks: TickColumns
    forecast: FloatArray
    naive: BoolArray
    model_version: str
    # The series' previous price and the model's forecast made at it (0 = none or naive),
    # so that the quality of that forecast can be scored now that the price is known.
    previous_price: FloatArray
    previous_forecast: FloatArray

    def __len__(self) -> int:
        return len(self.ticks)

    def versions(self) -> list[str]:
        return [NAIVE if naive else self.model_version for naive in self.naive.tolist()]


@dataclass(slots=True)
class EngineResult:
    forecasts: ForecastBatch
    rejects: list[OrderReject]
    nonfinite: int = 0  # forecasts that fell back to naive as the model's output was not finite


@dataclass(slots=True)
class _Undo:
    """What one attempt (a whole batch, or one tick of it) overwrote, to put it back, and
    the warm steps it made, for the recorder at commit."""

    journal: Allocations
    rejects: int  # how many rejects the batch had before this attempt
    nonfinite: int
    backup: Backup | None = None
    warm: list[tuple[IntArray, FloatArray, FloatArray, IntArray]] = field(default_factory=list)

    def restore(self, table: SeriesTable) -> None:
        if self.backup is not None:
            table.restore(self.backup)
        table.unallocate(self.journal)


@dataclass(slots=True)
class _Work:
    """A batch in progress: per-tick outputs, filled in round by round, and its undo records."""

    ticks: TickColumns
    slots: IntArray  # -1 where none was allocated
    forecast: FloatArray
    naive: BoolArray
    accepted: BoolArray
    previous_price: FloatArray
    previous_forecast: FloatArray
    rejects: list[OrderReject]
    undo: list[_Undo]
    nonfinite: int = 0

    @classmethod
    def start(cls, ticks: TickColumns) -> _Work:
        n = len(ticks)
        return cls(
            ticks=ticks,
            slots=np.full(n, -1, np.int64),
            forecast=ticks.price.copy(),
            naive=np.ones(n, bool),
            accepted=np.zeros(n, bool),
            previous_price=np.zeros(n),
            previous_forecast=np.zeros(n),
            rejects=[],
            undo=[],
        )

    def begin(self, table: SeriesTable) -> _Undo:
        """A new undo record, for the attempt that starts now."""
        self.undo.append(_Undo(table.journal(), len(self.rejects), self.nonfinite))
        return self.undo[-1]

    def abandon(self, table: SeriesTable, index: int) -> None:
        """Undo the last attempt, that of tick ``index``, and forget its outputs."""
        undo = self.undo.pop()
        undo.restore(table)
        del self.rejects[undo.rejects :]
        self.nonfinite = undo.nonfinite
        self.slots[index], self.accepted[index], self.naive[index] = -1, False, True
        self.forecast[index] = self.ticks.price[index]
        self.previous_price[index] = self.previous_forecast[index] = 0.0

    def result(self, version: str) -> EngineResult:
        keep = np.flatnonzero(self.accepted)
        forecasts = ForecastBatch(
            self.ticks.take(keep),
            self.forecast[keep],
            self.naive[keep],
            version,
            self.previous_price[keep],
            self.previous_forecast[keep],
        )
        rejects = sorted(self.rejects, key=lambda reject: reject.index)
        return EngineResult(forecasts, rejects, self.nonfinite)


class Engine:
    """Holds the series table and the serving model; steps batches of ticks."""

    def __init__(
        self,
        params: EngineParams,
        model: Stepper | None = None,
        recorder: StepRecorder | None = None,
    ) -> None:
        self.params = params
        self.model: Stepper | None = None
        self.recorder = recorder
        self.table = SeriesTable(params.ring_length, state_size=0)
        self._evictions = IdleEviction(params.evict_ttl_ns)
        self._pending: _Work | None = None
        self._backup_area = BackupArea()  # of the batch stepped together, reused
        if model is not None:
            self.swap_model(model)

    def process(self, ticks: TickColumns) -> EngineResult:
        """Step every tick of the batch; returns forecasts of the accepted ones and the rejects.

        The batch stays pending until ``commit`` or ``rollback``; one still pending from
        before is committed first.
        """
        self.commit()
        try:
            work = self._attempt(ticks, self._step_together)
        except Exception as exc:
            log.debug("stepping a batch of %d ticks raised %s; stepping them one at a time",
                      len(ticks), internal_error_detail(exc))  # fmt: skip
            work = self._attempt(ticks, self._step_singly)
        return work.result(self._version())

    def commit(self) -> int:
        """Make the pending batch final: its warm steps go to the recorder, then idle series
        are evicted. Returns how many were (0 with no batch pending)."""
        work, self._pending = self._pending, None
        if work is None:
            return 0
        self._record(work)
        accepted = np.flatnonzero(work.accepted)
        series = self.table.uid[work.slots[accepted]]
        ticks = work.ticks
        return self._evictions.sweep(
            self.table, ticks.partition[accepted], series, ticks.ts[accepted]
        )

    def rollback(self) -> None:
        """Put every series the pending batch touched back as it was before the batch, and
        drop the series it created (nothing happens with no batch pending)."""
        work, self._pending = self._pending, None
        if work is None:
            return
        for undo in reversed(work.undo):
            undo.restore(self.table)

    def _attempt(self, ticks: TickColumns, step: Callable[[_Work], None]) -> _Work:
        """Run ``step`` on ``ticks`` as the pending batch; if it raises, it is rolled back."""
        work = self._pending = _Work.start(ticks)
        try:
            step(work)
        except BaseException:
            self.rollback()
            raise
        return work

    def _step_together(self, work: _Work) -> None:
        """Step the whole batch in rounds, under one undo record."""
        undo = work.begin(self.table)
        ticks = work.ticks
        work.slots[:] = self._slots_for(ticks.series, ticks.partition, undo)
        rounds = self._rounds_of_admitted(work, np.arange(len(ticks)))
        if not rounds:
            return
        slots, appends = _touched(work.slots, rounds)
        undo.backup = self.table.backup(slots, appends, self._backup_area)
        for index in rounds:
            for block in row_blocks(len(index), self.params.block_rows):
                self._step_round(work, index[block])

    def _step_singly(self, work: _Work) -> None:
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

    def _step_one(self, work: _Work, index: int) -> None:
        undo = work.begin(self.table)
        ticks, at = work.ticks, slice(index, index + 1)
        work.slots[at] = self._slots_for(ticks.series[at], ticks.partition[at], undo)
        admitted = self._rounds_of_admitted(work, np.arange(index, index + 1))
        if admitted:
            (rows,) = admitted
            undo.backup = self.table.backup(work.slots[rows], np.ones(1, np.int64))
            self._step_round(work, rows)

    def _slots_for(
        self, series: list[str], partition: npt.NDArray[np.int32], undo: _Undo
    ) -> IntArray:
        limit = self.params.max_series
        return self.table.slots_for(series, partition, limit=limit, journal=undo.journal)

    def _rounds_of_admitted(self, work: _Work, index: IntArray) -> list[IntArray]:
        """The rounds of the ticks at ``index`` that have a slot; the others are rejected."""
        slots = work.slots[index]
        refused = slots < 0
        if refused.any():
            work.rejects.extend(_limit_rejects(index[refused], self.params.max_series))
            index, slots = index[~refused], slots[~refused]
        return [index[rows] for rows in _rounds(slots)]

    def _step_round(self, work: _Work, index: IntArray) -> None:
        """Step the ticks at ``index``, which belong to distinct series (a round, or a block
        of one)."""
        table = self.table
        slots, ts = work.slots[index], work.ticks.ts[index]
        stats = take_rows(table.stats, slots)
        in_order = (stats["last_price"] == 0) | (ts > stats["last_ts"])
        if not in_order.all():
            out = ~in_order
            work.rejects.extend(_order_rejects(index[out], ts[out], stats["last_ts"][out]))
            slots, index, ts, stats = (
                slots[in_order],
                index[in_order],
                ts[in_order],
                stats[in_order],
            )
        work.accepted[index] = True
        work.previous_price[index] = stats["last_price"]
        work.previous_forecast[index] = table.last_forecast[slots]
        step = advance(self.params.features, stats, work.ticks.price[index], ts)
        put_rows(table.stats, slots, stats)
        if step.warm.any():
            self._step_model(work, index[step.warm], slots[step.warm], step.take(step.warm))
        table.last_forecast[slots] = np.where(work.naive[index], 0.0, work.forecast[index])

    def _step_model(self, work: _Work, index: IntArray, slots: IntArray, step: FeatureStep) -> None:
        """Append the warm steps to the rings (keeping them for the recorder) and, with a
        model, step it and forecast from its prediction."""
        ts = work.ticks.ts[index]
        self.table.append_history(slots, step.z, step.d, ts)
        if self.recorder is not None:
            work.undo[-1].warm.append((slots, step.z, step.d, ts))
        if self.model is not None:
            self._forecast(self.model, work, index, slots, step)

    def _forecast(
        self,
        model: Stepper,
        work: _Work,
        index: IntArray,
        slots: IntArray,
        step: FeatureStep,
    ) -> None:
        """Step the model; forecast from its prediction, or naive where any of its output
        is not finite (that series' recurrent state then starts again from zeros)."""
        inputs = model_inputs(step.z, step.d, work.ticks.ts[index])
        prediction, state = model.step(inputs, self.table.recurrent[slots])
        failed = ~np.isfinite(prediction)
        if not np.isfinite(state).all():
            failed |= ~np.isfinite(state).all(axis=1)
        usable = np.where(failed, np.nan, prediction.astype(np.float64))  # nan: no forecast
        trusted = calibrate(self.table.stats, slots, step.z, usable, inputs)
        price = work.ticks.price[index]
        with np.errstate(over="ignore", invalid="ignore"):
            forecast = price * np.exp(step.scale * trusted)
        failed |= ~np.isfinite(forecast)
        state[failed] = 0.0
        self.table.recurrent[slots] = state
        work.forecast[index] = np.where(failed, price, forecast)
        work.naive[index] = failed
        work.nonfinite += int(failed.sum())

    def _record(self, work: _Work) -> None:
        """Hand the warm steps of a batch being committed to the recorder, in one call."""
        warm = [steps for undo in work.undo for steps in undo.warm]
        if self.recorder is None or not warm:
            return
        slots, z, d, ts = (np.concatenate(column) for column in zip(*warm, strict=True))
        self.recorder(self.table.uid[slots], z, d, ts)

    def swap_model(self, model: Stepper) -> None:
        """Serve ``model`` from the next batch on, its states re-warmed from the history rings
        (a pending batch is committed first)."""
        self.commit()
        if model.spec.n_features != len(FEATURE_NAMES):
            raise ValueError(
                f"model expects {model.spec.n_features} features, engine makes {len(FEATURE_NAMES)}"
            )
        self.model = model
        self.table.reset_recurrent(model.state_size)
        self._rewarm(self.table.active_slots())

    def _rewarm(self, slots: IntArray) -> None:
        """Recompute the recurrent state of ``slots`` by running the model over their rings,
        ``block_rows`` series at a time (a whole ring of 100,000 series is gigabytes)."""
        if self.model is None:
            return
        for block in row_blocks(len(slots), self.params.block_rows):
            rows = slots[block]
            history = self.table.history(rows)
            x = model_inputs(history.z, history.d, history.ts)
            _, state = self.model.run(x, history.length)
            state[~np.isfinite(state).all(axis=1)] = 0.0
            self.table.recurrent[rows] = state

    def snapshot_partition(self, partition: int) -> PartitionState:
        """A copy of the state of every series on ``partition`` (checkpoints), with the
        pending batch, if any, stepped in."""
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.snapshot(slots))

    def take_partition(self, partition: int) -> PartitionState:
        """Detach the state of every series on ``partition`` (revoke, hand-off); a pending
        batch is committed first."""
        self.commit()
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.take(slots))

    def put_partition(self, state: PartitionState) -> None:
        """Attach a partition's state; recurrent states made by another model (or not of
        this model's size, as a damaged checkpoint may hold) are re-warmed. A pending batch
        is committed first."""
        self.commit()
        snapshot = state.snapshot
        foreign = state.model_version != self._version() or snapshot.recurrent.shape[1:] != (
            self.table.state_size,
        )
        if foreign:
            snapshot = replace(
                snapshot,
                recurrent=np.zeros((len(snapshot.series), self.table.state_size), np.float32),
            )
        slots = self.table.put(snapshot)
        if foreign:
            self._rewarm(slots)

    def _version(self) -> str:
        return self.model.version if self.model is not None else NAIVE


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
        for number in np.unique(partition).tolist():
            on = partition == number
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
        self.leaders[partition] = _leaders(np.r_[known_ts, ts], np.r_[known_series, series])
        return self.clock(partition)


_NO_TS = np.zeros(0, np.int64)


def _leaders(ts: IntArray, series: IntArray) -> tuple[IntArray, IntArray]:
    """Of the (at most) two distinct ``series`` that reached the newest ``ts``, each one's
    newest ts and the series, newest first (series 2 counts once, with its 9):

    >>> _leaders(np.array([5, 9, 8, 7]), np.array([1, 2, 2, 3]))
    (array([9, 7]), array([2, 3]))
    """
    first = int(np.argmax(ts))
    others = np.flatnonzero(series != series[first])
    if not len(others):
        return ts[[first]], series[[first]]
    pick = [first, int(others[np.argmax(ts[others])])]
    return ts[pick], series[pick]


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


def row_blocks(rows: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of ``rows`` rows, how the engine steps them.

    >>> list(row_blocks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    return (slice(start, start + size) for start in range(0, rows, size))


def _touched(slots: IntArray, rounds: list[IntArray]) -> tuple[IntArray, IntArray]:
    """The distinct slots of the ticks in ``rounds`` and how many ticks each has."""
    if len(rounds) == 1:
        return slots[rounds[0]], np.ones(len(rounds[0]), np.int64)
    return np.unique(slots[np.concatenate(rounds)], return_counts=True)


def _rounds(slots: IntArray) -> list[IntArray]:
    """Batch indices grouped by occurrence: round k has the k-th tick of each slot, in order."""
    if len(slots) == 0:
        return []
    order = np.argsort(slots, kind="stable")
    ordered = slots[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
    occurrence = np.empty(len(slots), np.int64)
    occurrence[order] = np.arange(len(ordered)) - group_start
    if occurrence.max() == 0:
        return [np.arange(len(slots))]
    by_round = np.argsort(occurrence, kind="stable")
    bounds = np.searchsorted(occurrence[by_round], np.arange(1, occurrence.max() + 1))
    return np.split(by_round, bounds)
