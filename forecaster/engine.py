"""The engine: valid ticks in, one forecast per accepted tick out.

Per batch the engine maps series to slots, then steps in *rounds*: round k holds the
k-th tick of every series that ticked k+1 times or more, so each round touches each
series at most once and every round is one vectorised step across all its series
(in blocks of ``block_rows`` series). Several ticks of one series are thereby stepped
in order.

A tick whose ts is not after its series' last accepted ts is rejected, not stepped.
A series with less than ``min_history`` returns, or any series while no model is
loaded, gets the naive forecast (its last price), flagged ``model_version="naive"``.

>>> from forecaster.ticks import parse_messages
>>> engine = Engine(EngineParams())
>>> ticks = parse_messages([b'{"series":"X","ts":1,"price":2.0}',
...                         b'{"series":"X","ts":1,"price":2.5}']).ticks
>>> result = engine.process(ticks)
>>> result.forecasts.forecast.tolist(), [r.reason.value for r in result.rejects]
([2.0], ['ts_duplicate'])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from forecaster.features import FEATURE_NAMES, FeatureParams, FeatureStep, advance, model_inputs
from forecaster.model.stepper import Stepper
from forecaster.skill import calibrate
from forecaster.state import SeriesTable, TableSnapshot
from forecaster.ticks import RejectReason, TickColumns

NAIVE = "naive"

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Called with (slots, z, d, ts) for every warm step, e.g. to collect training data.
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
    evicted: int = 0  # idle series dropped after this batch


@dataclass(slots=True)
class _Work:
    """A batch in progress: per-tick outputs, filled in round by round."""

    ticks: TickColumns
    slots: IntArray
    forecast: FloatArray
    naive: BoolArray
    accepted: BoolArray
    previous_price: FloatArray
    previous_forecast: FloatArray
    rejects: list[OrderReject]

    @classmethod
    def start(cls, ticks: TickColumns, slots: IntArray) -> _Work:
        n = len(ticks)
        return cls(
            ticks=ticks,
            slots=slots,
            forecast=ticks.price.copy(),
            naive=np.ones(n, bool),
            accepted=np.zeros(n, bool),
            previous_price=np.zeros(n),
            previous_forecast=np.zeros(n),
            rejects=[],
        )

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
        return EngineResult(forecasts, sorted(self.rejects, key=lambda reject: reject.index))


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
        if model is not None:
            self.swap_model(model)

    def process(self, ticks: TickColumns) -> EngineResult:
        """Step every tick of the batch; returns forecasts of the accepted ones and the rejects."""
        work = _Work.start(ticks, self.table.slots_for(ticks.series, ticks.partition))
        for index in _rounds(work.slots):
            for block in row_blocks(len(index), self.params.block_rows):
                self._step_round(work, index[block])
        result = work.result(self._version())
        result.evicted = self._evictions.sweep(self.table, ticks)
        return result

    def _step_round(self, work: _Work, index: IntArray) -> None:
        """Step the ticks at ``index``, which belong to distinct series (a round, or a block
        of one)."""
        table = self.table
        slots, ts = work.slots[index], work.ticks.ts[index]
        stats = table.stats[slots]
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
        table.stats[slots] = stats
        if step.warm.any():
            self._step_model(work, index[step.warm], slots[step.warm], step.take(step.warm))
        table.last_forecast[slots] = np.where(work.naive[index], 0.0, work.forecast[index])

    def _step_model(self, work: _Work, index: IntArray, slots: IntArray, step: FeatureStep) -> None:
        """Record the warm steps and, with a model, step it and forecast from its prediction."""
        ts = work.ticks.ts[index]
        self.table.append_history(slots, step.z, step.d, ts)
        if self.recorder is not None:
            self.recorder(slots, step.z, step.d, ts)
        if self.model is None:
            return
        inputs = model_inputs(step.z, step.d, ts)
        prediction, self.table.recurrent[slots] = self.model.step(
            inputs, self.table.recurrent[slots]
        )
        trusted = calibrate(self.table.stats, slots, step.z, prediction.astype(np.float64), inputs)
        price = work.ticks.price[index]
        work.forecast[index] = price * np.exp(step.scale * trusted)
        work.naive[index] = False

    def swap_model(self, model: Stepper) -> None:
        """Serve ``model`` from the next batch on, its states re-warmed from the history rings."""
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
            _, self.table.recurrent[rows] = self.model.run(x, history.length)

    def snapshot_partition(self, partition: int) -> PartitionState:
        """A copy of the state of every series on ``partition`` (checkpoints)."""
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.snapshot(slots))

    def take_partition(self, partition: int) -> PartitionState:
        """Detach the state of every series on ``partition`` (revoke, hand-off)."""
        slots = self.table.slots_of_partition(partition)
        return PartitionState(partition, self._version(), self.table.take(slots))

    def put_partition(self, state: PartitionState) -> None:
        """Attach a partition's state; recurrent states made by another model are re-warmed."""
        snapshot = state.snapshot
        if state.model_version != self._version():
            snapshot = replace(
                snapshot,
                recurrent=np.zeros((len(snapshot.series), self.table.state_size), np.float32),
            )
        slots = self.table.put(snapshot)
        if state.model_version != self._version():
            self._rewarm(slots)

    def _version(self) -> str:
        return self.model.version if self.model is not None else NAIVE


@dataclass
class IdleEviction:
    """Evicts series idle for ``ttl_ns`` of event time: each partition's clock is the newest
    ts it delivered, so a replay evicts exactly as the live run did and a partition that
    lags behind the others loses nothing. A partition is swept each time its clock moved
    on by an eighth of the TTL, so memory stays bounded at a small cost per batch."""

    ttl_ns: int
    newest: dict[int, int] = field(default_factory=dict)
    swept: dict[int, int] = field(default_factory=dict)

    def sweep(self, table: SeriesTable, ticks: TickColumns) -> int:
        if self.ttl_ns <= 0 or not len(ticks):
            return 0
        evicted = 0
        for partition in np.unique(ticks.partition).tolist():
            newest = max(self.newest.get(partition, 0),
                         int(ticks.ts[ticks.partition == partition].max()))  # fmt: skip
            self.newest[partition] = newest
            if newest - self.swept.get(partition, 0) >= self.ttl_ns // 8:
                self.swept[partition] = newest
                evicted += table.evict_idle(newest - self.ttl_ns, partition)
        return evicted


def _order_rejects(index: IntArray, ts: IntArray, last_ts: IntArray) -> list[OrderReject]:
    return [
        OrderReject(i, RejectReason.TS_DUPLICATE, "ts equals the series' last accepted ts")
        if t == last
        else OrderReject(
            i, RejectReason.TS_OUT_OF_ORDER, "ts is before the series' last accepted ts"
        )
        for i, t, last in zip(index.tolist(), ts.tolist(), last_ts.tolist(), strict=True)
    ]


def row_blocks(rows: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``size`` of ``rows`` rows, how the engine steps them.

    >>> list(row_blocks(5, 2))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 6, None)]
    """
    return (slice(start, start + size) for start in range(0, rows, size))


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
