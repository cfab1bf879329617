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
   first batch boundary they are ready at (``Engine.swap``); else at once, at this
   boundary (a replay: the same forecasts at every run).

With ``overlap`` (at least once; ``OVERLAPS``), a step leaves its batch N in flight:
the next step awaits N (6) and makes it final (7, but the source's commit), swaps, steps
and sends N+1 (2-5), and then the source commits N's offsets while N+1's
acknowledgements are in flight (``commit``). With ``poll``, the next step also polls
N+1 before awaiting N. The engine steps N+1 only once N is final, so a batch is never
rolled back under another, and N's offsets are committed before anything of N+1. If N
was not delivered, N (and N+1 if polled, first: where both hold a partition, N's offset
wins) is polled again. A rebalance inside a poll first settles and commits what is in
flight (``PartitionStates.before_handoff``), so a partition handed off carries exactly
the batches committed. Both clients fetch in the background, so a poll only reads what
is fetched: polling early saves its CPU time, but the batch then misses the ticks that
arrive while N is acknowledged, and they wait a whole cycle more.

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

from forecaster.backoff import Backoff
from forecaster.core.engine import Engine, EngineResult, ForecastBatch
from forecaster.core.ticks import ParsedBatch, RejectReason
from forecaster.errors import DeliveryError
from forecaster.faults import internal_error_detail, log_internal_error
from forecaster.io.base import DeadLetter, Sink, Source, SourceBatch, Transactions
from forecaster.io.sending import dead_letters_of, isolate_unencodable, unreplayed
from forecaster.model.stepper import Stepper
from forecaster.ops.counting import Totals, count_batch, count_series
from forecaster.ops.metrics import Metrics
from forecaster.state.partitions import PartitionStates

log = logging.getLogger(__name__)

DEFAULT_RETRY_LONGEST_S = 10.0
# The poll while a batch's acknowledgements are in flight waits at most this long for
# records: an empty stream must not hold the batch's commit back by a whole poll_timeout.
IN_FLIGHT_POLL_S = 0.005
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
    # At least once: what overlaps a batch's acknowledgement, one of OVERLAPS (the module's
    # docstring); "off" with ``transactions``.
    overlap: str = "off"
    _in_flight: Sent | None = field(default=None, init=False, repr=False)
    _undelivered: SourceBatch | None = field(default=None, init=False, repr=False)
    _uncommitted: SourceBatch | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.transactions is not None:
            self.overlap = "off"
        if self.overlap != "off" and self.states is not None:
            self.states.before_handoff = self._hand_off

    def run(self, stop: threading.Event) -> None:
        """Process batches until the source is exhausted or ``stop`` is set; a batch whose
        delivery failed is processed again after the retry wait."""
        while not stop.is_set():
            try:
                if not self.step():
                    break
            except DeliveryError as exc:
                wait = self.retry.failed()
                log.warning("%s; the batch will be processed again in %.1f s", exc, wait)
                stop.wait(wait)
        try:
            self.settle()
        except DeliveryError as exc:  # not committed: whoever polls next processes it again
            log.warning("%s; the last batch is left to be processed again", exc)

    def step(self) -> bool:
        """Process one batch (with ``overlap``, up to sending it: ``settle`` or the next
        step finishes it); False once the source is exhausted."""
        if self.overlap == "poll" and self._in_flight is not None:
            batch = self.source.poll(IN_FLIGHT_POLL_S)  # 1, while the batch before is acked
            self._settle(batch)  # 6-7 of the batch before, but the source's commit
        else:
            self._settle(None)
            batch = self.source.poll(self.poll_timeout)  # 1
        if batch is None:
            self._commit_source()
            return False
        self._swap_if_pending()  # 8, of the batch before: nothing is pending in the engine
        batch = self._resume_partitions(batch)  # 2
        try:
            self._process(batch, self.overlap != "off")
        except DESTINATION_FAULTS:  # the batch is redone, or the run ends
            raise
        except Exception as exc:  # a fault no stage isolated: find the record it is in
            log_internal_error("processing a batch; processing its records one by one", exc)
            if self.transactions is not None:  # what the batch sent must not be committed
                self.transactions.abort()
            self.engine.rollback()
            self._process_one_by_one(batch)
        finally:
            self._commit_source()  # of the batch before, while this one's acks are in flight
        return True

    def settle(self) -> None:
        """Steps 6-7 of the batch in flight, if any (``overlap``); DeliveryError if it was
        not delivered (it is then polled again)."""
        try:
            self._settle(None)
        finally:
            self._commit_source()

    def _hand_off(self) -> None:
        """Before partitions come or go: what is in flight is settled and committed."""
        self._settle_in_flight()
        self._commit_source()

    def _settle(self, polled: SourceBatch | None) -> None:
        """Steps 6-7 of the batch in flight but the source's commit (``_commit_source``).
        If it was not delivered it raises DeliveryError, at least once after rewinding the
        source to ``polled`` (polled meanwhile) and then to the batch, so that both are
        polled again (exactly once, the failed partitions are taken again anyway)."""
        self._settle_in_flight()
        undelivered, self._undelivered = self._undelivered, None
        if undelivered is None:
            return
        if self.transactions is None:  # exactly once, the failed partitions are taken again
            if polled is not None:
                self.source.rewind(polled)  # first: the earlier batch's offsets win
            self.source.rewind(undelivered)
        raise DeliveryError(self.delivery_failure)

    def _settle_in_flight(self) -> None:
        """Await the batch in flight and make it final; one not delivered is rolled back
        and left for ``_settle`` to rewind. Never raises a delivery failure: it also runs
        inside a rebalance, before partitions are handed off."""
        sent, self._in_flight = self._in_flight, None
        if sent is None:
            return
        try:
            self._await(sent)
        except DeliveryError:
            self._undelivered = sent.batch
            return
        self._finish(sent)

    def _resume_partitions(self, batch: SourceBatch) -> SourceBatch:
        """Step 2: seek restored partitions to their state's offset; drop the records of
        partitions that are restoring or were just moved."""
        if self.states is None:
            return batch
        resumes = self.states.resumes()
        self.source.seek({resume.partition: resume.offset for resume in resumes})
        return batch.without(self.states.held() | {resume.partition for resume in resumes})

    def _process(self, batch: SourceBatch, overlap: bool = False) -> None:
        """Steps 3-7 for one batch; with ``overlap``, steps 3-5 (it is left in flight, for
        ``_settle`` after the next poll)."""
        arrived = time.perf_counter()
        parsed = batch.parse()  # 3
        if not parsed.received:
            return
        known_series = len(self.engine.table)
        started = time.perf_counter()
        result = self.engine.process(parsed.ticks)  # 4
        self.metrics.step_seconds.observe(time.perf_counter() - started)
        self._in_flight = self._send(batch, parsed, result, known_series, arrived)  # 5
        if not overlap:
            self._settle(None)  # 6-7

    def _finish(self, sent: Sent) -> None:
        """Step 7 for a delivered batch, then its counting."""
        delivered = time.perf_counter()
        evicted = self._commit(sent.batch)
        try:  # the batch is done: what fails now must not make it be processed again
            count_batch(self.metrics, self.totals, parsed=sent.parsed, forecasts=sent.forecasts,
                        dead_letters=sent.dead_letters, nonfinite=sent.nonfinite)  # fmt: skip
            count_series(self.metrics, self.totals, len(self.engine.table), sent.known_series,
                         evicted)  # fmt: skip
            if self.updates is not None:
                self.updates.settled(sent.forecasts)
        except Exception as exc:
            log_internal_error("counting a delivered batch", exc)
        self.metrics.tick_to_forecast_seconds.observe(delivered - sent.arrived)

    def _commit(self, batch: SourceBatch) -> int:
        """Step 7 for a delivered batch; returns how many idle series were evicted."""
        evicted = self.engine.commit()
        if self.transactions is not None:  # offsets and checkpoints went with the transactions
            return evicted
        if self.states is not None:
            self.states.advance(batch.next_offsets())
            self.states.checkpoint_when_due()
        self._commit_source()  # one batch's offsets after the other's
        self._uncommitted = batch
        if self.overlap == "off":
            self._commit_source()
        return evicted

    def _commit_source(self) -> None:
        """The source commits the offsets of the last batch made final, if not yet."""
        batch, self._uncommitted = self._uncommitted, None
        if batch is not None:
            self.source.commit(batch)

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

    def _process_one_by_one(self, batch: SourceBatch) -> None:
        """Each record of ``batch`` as a batch of its own. If one is not delivered, it and
        every record after it are polled again: the source is past all of them, on every
        partition, not only on the failed record's."""
        singles = batch.split()
        for done, single in enumerate(singles):
            try:
                self._process_alone(single)
            except DESTINATION_FAULTS:
                for undone in reversed(singles[done:]):  # the earliest last: its offset wins
                    self.source.rewind(undone)
                raise

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

    def _send(
        self,
        batch: SourceBatch,
        parsed: ParsedBatch,
        result: EngineResult,
        known_series: int,
        arrived: float,
    ) -> Sent:
        """Step 5; if sending fails, the batch is undone (``_undo``), the source rewound
        to it, and it raises."""
        forecasts = result.forecasts
        dead_letters = dead_letters_of(batch, parsed, result)
        if self.states is not None and self.states.replaying:
            forecasts, dead_letters = unreplayed(batch, self.states.replaying, forecasts,
                                                  dead_letters)  # fmt: skip
        try:
            try:
                self.sink.write(forecasts, dead_letters)
            except DESTINATION_FAULTS:
                raise
            except Exception as exc:  # an encoding fault: nothing was sent (Sink.write)
                log_internal_error("encoding a forecast", exc)
                forecasts, dead_letters = isolate_unencodable(batch, parsed, forecasts,
                                                               dead_letters)  # fmt: skip
                self.sink.write(forecasts, dead_letters)
        except DeliveryError as exc:
            self._undo()
            self.source.rewind(batch)
            self.delivery_failure = str(exc)
            raise
        return Sent(batch, parsed, forecasts, dead_letters, result.nonfinite, known_series,
                    arrived)  # fmt: skip

    def _await(self, sent: Sent) -> None:
        """Step 6 (exactly once, 6-7: the transactions commit); a batch not delivered is
        undone and it raises DeliveryError (the caller rewinds the source)."""
        try:
            if self.transactions is None:
                self.sink.flush()
            else:
                self._commit_transactions(sent.batch)
        except DeliveryError as exc:
            if self.transactions is None:
                self._undo()
            self.delivery_failure = str(exc)
            raise
        self.delivery_failure = ""
        self.retry.succeeded()

    def _undo(self) -> None:
        """A batch not delivered: what it sent in transactions is aborted and the engine
        goes back to before it."""
        if self.transactions is not None:
            self.transactions.abort()
        self.engine.rollback()

    def _swap_if_pending(self) -> None:
        """Step 8: begin a swap to a model that is ready (at once, or in the background,
        where a newer one replaces one being re-warmed), or carry a swap begun on."""
        model = self.updates.pending() if self.updates is not None else None
        begun, job = time.perf_counter(), self.engine.rewarming
        installed: Stepper | None
        if model is not None and (job is None or job.model.version != model.version):
            started, installed = begun, self.engine.swap(model)
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


@dataclass
class Sent:
    """A batch stepped and sent (step 5), its acknowledgements to be awaited."""

    batch: SourceBatch
    parsed: ParsedBatch
    forecasts: ForecastBatch
    dead_letters: list[DeadLetter]
    nonfinite: int
    known_series: int
    arrived: float  # when its poll returned (perf_counter)
