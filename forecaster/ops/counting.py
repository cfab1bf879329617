"""What the loop counts of each batch it delivered: the run's ``Totals`` and the metrics
(``forecaster.ops.metrics``)."""

from __future__ import annotations

from dataclasses import dataclass

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import ParsedBatch
from forecaster.io.base import DeadLetter
from forecaster.ops.metrics import Metrics


@dataclass
class Totals:
    """What a pipeline has done so far."""

    received: int = 0
    accepted: int = 0
    rejected: int = 0
    batches: int = 0
    series_created: int = 0  # a series evicted and seen again counts again


def count_batch(
    m: Metrics,
    totals: Totals,
    *,
    parsed: ParsedBatch,
    forecasts: ForecastBatch,
    dead_letters: list[DeadLetter],
    nonfinite: int,
) -> None:
    """A delivered batch's ticks, forecasts, dead letters and their quality and intervals."""
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


def count_series(m: Metrics, totals: Totals, held: int, known_series: int, evicted: int) -> None:
    """The series held after a batch (``held``, ``known_series`` before it), made and evicted."""
    created = held - known_series + evicted
    totals.series_created += created
    m.active_series.set(held)
    m.series_created.inc(created)
    m.series_evicted.inc(evicted)
