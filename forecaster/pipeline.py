"""The data path, one batch at a time: source -> parse -> engine -> sink -> commit.

The source's offsets are committed only after the sink acknowledged every forecast
and dead letter of the batch, so a crash repeats at most the batch in flight and
never skips a tick. A new model is swapped in only between batches, so each batch is
stepped by exactly one model.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from forecaster.engine import Engine, EngineResult
from forecaster.io.base import DeadLetter, Sink, Source, SourceBatch
from forecaster.metrics import Metrics
from forecaster.model.stepper import Stepper
from forecaster.ticks import ParsedBatch, Rejected

log = logging.getLogger(__name__)


class ModelUpdates(Protocol):
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


@dataclass
class Pipeline:
    source: Source[Any]
    engine: Engine
    sink: Sink
    metrics: Metrics = field(default_factory=Metrics)
    updates: ModelUpdates | None = None
    poll_timeout: float = 0.2
    totals: Totals = field(default_factory=Totals)

    def run(self, stop: threading.Event) -> None:
        """Process batches until the source is exhausted or ``stop`` is set."""
        while not stop.is_set() and self.step():
            pass

    def step(self) -> bool:
        """Process one batch; False once the source is exhausted."""
        batch = self.source.poll(self.poll_timeout)
        if batch is None:
            return False
        arrived = time.perf_counter()
        parsed = batch.parse()
        if parsed.received:
            self._process(batch, parsed, arrived)
        self._swap_if_pending()
        return True

    def _process(self, batch: SourceBatch, parsed: ParsedBatch, arrived: float) -> None:
        known_series = len(self.engine.table)
        started = time.perf_counter()
        result = self.engine.process(parsed.ticks)
        stepped = time.perf_counter()
        dead_letters = _dead_letters(batch, parsed, result)
        self.sink.write(result.forecasts, dead_letters)
        self.sink.flush()
        delivered = time.perf_counter()
        self.source.commit(batch)
        self._count(parsed, result, dead_letters, known_series)
        self.metrics.step_seconds.observe(stepped - started)
        self.metrics.tick_to_forecast_seconds.observe(delivered - arrived)

    def _count(
        self,
        parsed: ParsedBatch,
        result: EngineResult,
        dead_letters: list[DeadLetter],
        known_series: int,
    ) -> None:
        m, totals = self.metrics, self.totals
        accepted = len(result.forecasts)
        totals.batches += 1
        totals.received += parsed.received
        totals.accepted += accepted
        totals.rejected += len(dead_letters)
        m.ticks_received.inc(parsed.received)
        m.ticks_accepted.inc(accepted)
        for letter in dead_letters:
            m.ticks_rejected.labels(letter.rejected.reason.value).inc()
        naive = int(result.forecasts.naive.sum())
        m.forecasts_emitted.labels("naive").inc(naive)
        m.forecasts_emitted.labels("model").inc(accepted - naive)
        m.batch_size.observe(parsed.received)
        m.active_series.set(len(self.engine.table))
        m.series_created.inc(len(self.engine.table) - known_series + result.evicted)
        m.series_evicted.inc(result.evicted)
        m.forecast_quality.observe(result.forecasts)

    def _swap_if_pending(self) -> None:
        model = self.updates.pending() if self.updates is not None else None
        if model is None:
            return
        self.engine.swap_model(model)
        self.metrics.model_serving(model.version, model.spec.cell)
        log.info("now serving model %s", model.version)


def _dead_letters(
    batch: SourceBatch, parsed: ParsedBatch, result: EngineResult
) -> list[DeadLetter]:
    """Parse rejects and engine rejects of a batch, in source order, with their origins."""
    positions = parsed.ticks.position
    rejected = list(parsed.rejects)
    for reject in result.rejects:
        position = int(positions[reject.index])
        rejected.append(Rejected(position, parsed.raw_of(position), reject.reason, reject.detail))
    rejected.sort(key=lambda r: r.position)
    return [DeadLetter(r, batch.origin(r.position)) for r in rejected]
