"""The data path, one batch at a time, the same for every source, in this order:

1. poll: the source hands over the next batch of raw records. A partitioned source
   reports the partitions its group assigned, revoked or lost during the poll to the
   partition states, which restore or checkpoint their series;
2. resume: partitions whose checkpoint finished loading continue at its offset (the
   source seeks), and records of partitions still restoring, or just moved, are dropped
   (they will be fetched again);
3. parse: valid ticks as columns, every other record a reject with its reason;
4. step: the engine steps the ticks, keeping what it needs to undo the batch;
5. send: forecasts and dead letters go to the sink;
6. await delivery: the sink's destination acknowledges every record;
7. commit: the engine makes the batch final (idle eviction, warm steps to the
   retrainer), the partition states advance to the batch's offsets and checkpoint when
   due, and the source commits the offsets;
8. swap: a model that is ready serves from the next batch, so each batch is stepped by
   exactly one model. With the engine's ``rewarm_in_background`` (the service) its states
   are re-warmed off the loop while the serving model goes on, and it is installed at the
   first batch boundary they are ready at (``Engine.begin_swap``); else at once, at this
   boundary (a replay: the same forecasts at every run).

Exactly once (``transactions``), steps 6 and 7 become one: the batch's forecasts and
dead letters, its checkpoints when due, and its input offsets go into one transaction
per input partition, committed together (``Transactions``). A partition whose
transaction failed goes back to its last committed point: its state is dropped and
restored again, stepping the ticks up to its committed offset without emitting
(``PartitionStates.replaying``), as after a crash; the other partitions of the batch
keep it. Forecasts and dead letters of replayed ticks are never sent again.

At least once, a crash repeats at most the batches since the last commit and never skips a tick. If
delivery fails (DeliveryError, step 6), the engine rolls back to before the batch, the
source rewinds to the batch's first records, nothing is committed, and after a backoff
the same records are stepped again with the same results. No message can stop the loop:
parsing and stepping isolate a message that raises (a dead letter, ``internal_error``),
and so does step 5 for a forecast that cannot be encoded. Any other fault before
delivery makes the batch be processed again record by record, so that it costs only the
record it is in; a fault after delivery (counting) is logged and costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from forecaster.backoff import Backoff
from forecaster.core.engine import Engine, EngineResult, ForecastBatch
from forecaster.core.ticks import ParsedBatch, Rejected, RejectReason
from forecaster.errors import DeliveryError
from forecaster.faults import internal_error_detail, log_internal_error
from forecaster.io.base import DeadLetter, Sink, Source, SourceBatch, Transactions
from forecaster.io.records import unencodable_rows
from forecaster.model.stepper import Stepper
from forecaster.ops.metrics import Metrics
from forecaster.state.partitions import PartitionStates

log = logging.getLogger(__name__)

DEFAULT_RETRY_LONGEST_S = 10.0
# What a sink raises when its destination, not a message, is at fault (a broker that did
# not acknowledge, a closed stdout): never taken for a message's fault and isolated.
DESTINATION_FAULTS = (DeliveryError, OSError)


class ModelUpdates(Protocol):
    def settled(self, forecasts: ForecastBatch) -> None:
        """A batch was delivered: its prices settle earlier forecasts (live quality)."""
        ...

    def pending(self) -> Stepper | None:
        """A model to serve from the next batch on, if one is ready."""
        ...


@dataclass
class Totals:
    """What a pipeline has done so far."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    series_created: int = 0  # a series evicted and seen again counts again


@dataclass
class Pipeline:
    source: Source[Any]
    engine: Engine
    sink: Sink
    metrics: Metrics
    # The series state of a partitioned source's partitions (None: a file, one stream).
    states: PartitionStates | None = None
    updates: ModelUpdates | None = None
    poll_timeout: float = 0.2
    # The wait before a batch whose delivery failed is processed again; doubles while
    # deliveries keep failing.
    retry: Backoff = field(default_factory=lambda: Backoff(longest=DEFAULT_RETRY_LONGEST_S))
    totals: Totals = field(default_factory=Totals)
    # Why the last batch could not be delivered; "" once a batch was delivered again.
    delivery_failure: str = ""
    # Exactly once: each batch is delivered by committing its transactions (with ``states``).
    transactions: Transactions | None = None

    def run(self, stop: threading.Event) -> None:
        """Process batches until the source is exhausted or ``stop`` is set; a batch whose
        delivery failed is processed again after the retry wait."""
        while not stop.is_set():
            try:
                if not self.step():
                    return
            except DeliveryError as exc:
                wait = self.retry.failed()
                log.warning("%s; the batch will be processed again in %.1f s", exc, wait)
                stop.wait(wait)

    def step(self) -> bool:
        """Process one batch; False once the source is exhausted."""
        batch = self.source.poll(self.poll_timeout)  # 1
        if batch is None:
            return False
        batch = self._resume_partitions(batch)  # 2
        try:
            self._process(batch)
        except DESTINATION_FAULTS:  # the batch is redone, or the run ends
            raise
        except Exception as exc:  # a fault no stage isolated: find the record it is in
            log_internal_error("processing a batch; processing its records one by one", exc)
            if self.transactions is not None:  # what the batch sent must not be committed
                self.transactions.abort()
            self.engine.rollback()
            for single in batch.split():
                self._process_alone(single)
        self._swap_if_pending()  # 8
        return True

    def _resume_partitions(self, batch: SourceBatch) -> SourceBatch:
        """Step 2: seek restored partitions to their state's offset; drop the records of
        partitions that are restoring or were just moved."""
        if self.states is None:
            return batch
        resumes = self.states.resumes()
        self.source.seek({resume.partition: resume.offset for resume in resumes})
        return batch.without(self.states.held() | {resume.partition for resume in resumes})

    def _process(self, batch: SourceBatch) -> None:
        """Steps 3-7 for one batch."""
        arrived = time.perf_counter()
        parsed = batch.parse()  # 3
        if not parsed.received:
            return
        known_series = len(self.engine.table)
        started = time.perf_counter()
        result = self.engine.process(parsed.ticks)  # 4
        stepped = time.perf_counter()
        forecasts, dead_letters = self._deliver(batch, parsed, result)  # 5, 6
        delivered = time.perf_counter()
        evicted = self._commit(batch)  # 7
        try:  # the batch is done: what fails now must not make it be processed again
            self._count(parsed, forecasts, dead_letters, result.nonfinite)
            self._count_series(known_series, evicted)
            if self.updates is not None:
                self.updates.settled(forecasts)
        except Exception as exc:
            log_internal_error("counting a delivered batch", exc)
        self.metrics.step_seconds.observe(stepped - started)
        self.metrics.tick_to_forecast_seconds.observe(delivered - arrived)

    def _commit(self, batch: SourceBatch) -> int:
        """Step 7 for a delivered batch; returns how many idle series were evicted."""
        evicted = self.engine.commit()
        if self.transactions is not None:  # offsets and checkpoints went with the transactions
            return evicted
        if self.states is not None:
            self.states.advance(batch.next_offsets())
            self.states.checkpoint_when_due()
        self.source.commit(batch)
        return evicted

    def _commit_transactions(self, batch: SourceBatch) -> None:
        """Exactly once, steps 6-7: checkpoints when due, then the transactions with the
        batch's offsets. A partition whose transaction failed is taken again (restored to
        its last committed point); DeliveryError then says so, after the others kept it."""
        transactions, states = self.transactions, self.states
        assert transactions is not None and states is not None
        offsets = batch.next_offsets()
        states.advance(offsets)
        states.checkpoint_when_due()  # its snapshots hold the batch, at the offsets after it
        failed = transactions.commit(offsets)
        if not failed:
            return
        self.engine.commit()
        states.lose(failed)  # the source takes them again at its next poll
        raise DeliveryError(f"the transactions of partitions {sorted(failed)} failed: they go "
                            "back to their last committed point")  # fmt: skip

    def _process_alone(self, single: SourceBatch) -> None:
        """A batch of one record; if even that fails, the record is an internal_error."""
        try:
            self._process(single)
        except DESTINATION_FAULTS:
            raise
        except Exception as exc:
            log_internal_error("processing a message", exc)
            self.engine.rollback()
            letter = single.unprocessable(internal_error_detail(exc))
            self.sink.write(ForecastBatch.empty(), [letter])
            if self.transactions is None:
                self.sink.flush()
            else:
                self._commit_transactions(single)
            self._commit(single)
            self.totals.rejected += 1
            self.metrics.ticks_rejected.labels(RejectReason.INTERNAL_ERROR.value).inc()

    def _deliver(
        self, batch: SourceBatch, parsed: ParsedBatch, result: EngineResult
    ) -> tuple[ForecastBatch, list[DeadLetter]]:
        """Steps 5 and 6; on a failed delivery the engine is rolled back, the source
        rewound to the batch, and it raises."""
        forecasts = result.forecasts
        dead_letters = _dead_letters(batch, parsed, result)
        if self.states is not None and self.states.replaying:
            forecasts, dead_letters = _unreplayed(batch, self.states.replaying, forecasts,
                                                  dead_letters)  # fmt: skip
        try:
            try:
                self.sink.write(forecasts, dead_letters)
            except DESTINATION_FAULTS:
                raise
            except Exception as exc:  # an encoding fault: nothing was sent (Sink.write)
                log_internal_error("encoding a forecast", exc)
                forecasts, dead_letters = _isolate_unencodable(batch, parsed, forecasts,
                                                               dead_letters)  # fmt: skip
                self.sink.write(forecasts, dead_letters)
            if self.transactions is None:
                self.sink.flush()
        except DeliveryError as exc:
            if self.transactions is not None:
                self.transactions.abort()
            self.engine.rollback()
            self.source.rewind(batch)
            self.delivery_failure = str(exc)
            raise
        if self.transactions is not None:
            try:
                self._commit_transactions(batch)
            except DeliveryError as exc:
                self.delivery_failure = str(exc)
                raise
        self.delivery_failure = ""
        self.retry.succeeded()
        return forecasts, dead_letters

    def _count(
        self,
        parsed: ParsedBatch,
        forecasts: ForecastBatch,
        dead_letters: list[DeadLetter],
        nonfinite: int,
    ) -> None:
        m, totals = self.metrics, self.totals
        accepted = len(forecasts)
        totals.batches += 1
        totals.received += parsed.received
        totals.accepted += accepted
        totals.rejected += len(dead_letters)
        m.ticks_received.inc(parsed.received)
        m.ticks_accepted.inc(accepted)
        for letter in dead_letters:
            m.ticks_rejected.labels(letter.rejected.reason.value).inc()
        naive = int(forecasts.naive.sum())
        m.forecasts_emitted.labels("naive").inc(naive)
        m.forecasts_emitted.labels("model").inc(accepted - naive)
        m.forecasts_nonfinite.inc(nonfinite)
        m.batch_size.observe(parsed.received)
        m.forecast_quality.observe(forecasts)
        m.forecast_intervals.observe(forecasts)

    def _count_series(self, known_series: int, evicted: int) -> None:
        m = self.metrics
        created = len(self.engine.table) - known_series + evicted
        self.totals.series_created += created
        m.active_series.set(len(self.engine.table))
        m.series_created.inc(created)
        m.series_evicted.inc(evicted)

    def _swap_if_pending(self) -> None:
        """Step 8: begin a swap to a model that is ready (at once, or in the background,
        where a newer one replaces one being re-warmed), or carry a swap begun on."""
        model = self.updates.pending() if self.updates is not None else None
        begun, job = time.perf_counter(), self.engine.rewarming
        installed: Stepper | None
        if model is not None and not self.engine.params.rewarm_in_background:
            self.engine.swap_model(model)
            started, installed = begun, model
        elif model is not None and (job is None or job.model.version != model.version):
            log.info("re-warming model %s off the loop; %s serves meanwhile", model.version,
                     self.engine.model.version if self.engine.model else "naive")  # fmt: skip
            started, installed = begun, self.engine.begin_swap(model)
        elif job is not None:
            started, installed = job.started, self.engine.continue_swap()
        else:
            return
        now = time.perf_counter()
        self.metrics.swap_pause_seconds.observe(now - begun)
        if installed is not None:
            self.metrics.swap_rewarm_seconds.observe(now - started)
            self.metrics.model_serving(installed.version, installed.spec.cell)
            log.info("now serving model %s (re-warmed in %.1f s)", installed.version, now - started)


def _dead_letters(
    batch: SourceBatch, parsed: ParsedBatch, result: EngineResult
) -> list[DeadLetter]:
    """Parse rejects and engine rejects of a batch, in source order."""
    positions = parsed.ticks.position
    rejected = list(parsed.rejects)
    for reject in result.rejects:
        position = int(positions[reject.index])
        rejected.append(Rejected(position, parsed.raw_of(position), reject.reason, reject.detail))
    rejected.sort(key=lambda r: r.position)
    return [batch.dead_letter(r) for r in rejected]


def _unreplayed(
    batch: SourceBatch,
    replaying: dict[int, int],
    forecasts: ForecastBatch,
    dead_letters: list[DeadLetter],
) -> tuple[ForecastBatch, list[DeadLetter]]:
    """The forecasts and dead letters of a batch's records at or after the committed
    offset of their partition: those before it were delivered already (exactly once)."""

    def delivered(origin: dict[str, Any]) -> bool:
        return bool(origin["offset"] < replaying.get(origin["partition"], -1))

    positions = forecasts.ticks.position.tolist()
    keep = [row for row, position in enumerate(positions)
            if not delivered(batch.origin(position))]  # fmt: skip
    letters = [letter for letter in dead_letters if not delivered(letter.origin)]
    return forecasts.take(np.asarray(keep, np.int64)), letters


def _isolate_unencodable(
    batch: SourceBatch,
    parsed: ParsedBatch,
    forecasts: ForecastBatch,
    dead_letters: list[DeadLetter],
) -> tuple[ForecastBatch, list[DeadLetter]]:
    """The forecasts that can be encoded, and a dead letter (internal_error) for each of
    the others, in source order among the batch's other dead letters."""
    failed = unencodable_rows(forecasts)
    positions = forecasts.ticks.position
    letters = list(dead_letters)
    for row, error in failed:
        position = int(positions[row])
        rejected = Rejected(position, parsed.raw_of(position), RejectReason.INTERNAL_ERROR,
                            internal_error_detail(error))  # fmt: skip
        letters.append(batch.dead_letter(rejected))
    letters.sort(key=lambda letter: letter.rejected.position)
    keep = np.setdiff1d(np.arange(len(forecasts)), [row for row, _ in failed])
    return forecasts.take(keep), letters
