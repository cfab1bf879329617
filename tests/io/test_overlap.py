"""A batch that is not delivered, against a real broker: with its acknowledgement
overlapping the commit of the batch before (and with ``poll`` the next poll too,
``Pipeline.overlap``), or while it is processed record by record after a fault, nothing
after it is committed first and every record of it is processed again.

The failures are the one thing not real: a sink that hands every record to the real Kafka
sink and awaits its acknowledgements, then reports one flush as failed (acknowledgements
that came too late), and, for the record-by-record case, a parse that fails once for a
batch of several partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from forecaster.config import Settings
from forecaster.core.engine import Engine, ForecastBatch
from forecaster.core.ticks import ParsedBatch
from forecaster.errors import DeliveryError
from forecaster.io.base import DeadLetter, Sink, Source
from forecaster.io.kafka.source import KafkaBatch
from forecaster.ops.metrics import Metrics
from forecaster.params import engine_params
from forecaster.pipeline import Pipeline
from forecaster.service import transport
from tests.support.broker import committed_offsets, read_topic
from tests.support.kafka import (
    PREFIX_ROWS,
    WAIT_S,
    committed_up_to,
    end_offsets_of,
    expected_keys,
    forecast_keys,
    make_topics,
    on_both_clients,
    publish_input,
    read_until_complete,
)
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

FAILING_FLUSH = 3  # the third batch sent fails (with ``poll``, once the fourth is polled)


@dataclass
class FailsOneFlush:
    """The real sink, except that its ``failing``-th flush raises DeliveryError after the
    real one returned."""

    sink: Sink
    failing: int
    flushes: int = 0

    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None:
        self.sink.write(forecasts, dead_letters)

    def flush(self) -> None:
        self.sink.flush()
        self.flushes += 1
        if self.flushes == self.failing:
            raise DeliveryError("acknowledged too late (the test's failure)")

    def close(self) -> None:
        self.sink.close()


@dataclass
class PollsSeen:
    """The real source, noting the records of each poll."""

    source: Source[Any]
    sizes: list[int] = field(default_factory=list)

    def poll(self, timeout: float) -> Any:
        batch = self.source.poll(timeout)
        self.sizes.append(len(batch.records))
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)


@on_both_clients
@pytest.mark.parametrize("overlap", ["commit", "poll"])
def test_a_failed_batch_in_flight_is_redone_and_nothing_after_it_is_committed_first(
    settings: Settings, sample_prefix: Path, overlap: str
) -> None:
    make_topics(settings)
    publish_input(settings, sample_prefix)
    engine, metrics = Engine(engine_params(settings)), Metrics()
    source, sink, states = transport(settings, engine, metrics)
    polls, failing = PollsSeen(source), FailsOneFlush(sink, FAILING_FLUSH)
    pipeline = Pipeline(polls, engine, failing, metrics, states=states, overlap=overlap)
    try:
        committed_before = {}
        with pytest.raises(DeliveryError, match="the test's failure"):
            while True:
                committed_before = committed_offsets(settings.bootstrap_servers,
                                                     settings.group_id)  # fmt: skip
                pipeline.step()
        assert failing.flushes == FAILING_FLUSH
        if overlap == "poll":  # the batch in flight failed after the next one was polled
            assert polls.sizes[-1] > 0
        # Nothing of it (or of the one polled) is committed: the batch before's offsets.
        assert committed_offsets(settings.bootstrap_servers, settings.group_id) == (
            committed_before
        )
        assert pipeline.delivery_failure
        stepped = pipeline.totals.received
        wait_for(lambda: _stepped_all(pipeline), "every tick stepped again", WAIT_S)
        pipeline.settle()
    finally:
        pipeline.sink.close()
        pipeline.source.close()

    assert pipeline.totals.received == PREFIX_ROWS > stepped
    forecasts = read_until_complete(settings, expected_keys(sample_prefix))
    assert set(forecast_keys(forecasts)) == expected_keys(sample_prefix)
    inputs = read_topic(settings.bootstrap_servers, settings.input_topic,
                        lambda records: len(records) >= PREFIX_ROWS, WAIT_S)  # fmt: skip
    assert committed_up_to(settings, end_offsets_of(inputs)) == end_offsets_of(inputs)


@on_both_clients
@pytest.mark.parametrize("overlap", ["off", "poll"])
def test_a_record_not_delivered_while_a_batch_goes_record_by_record_loses_no_record(
    settings: Settings, sample_prefix: Path, overlap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch of several partitions fails as a whole (a fault no stage isolated),
    so it is processed record by record; the second record's delivery then fails. That
    record and every one after it, on every partition, must be processed again."""
    make_topics(settings)
    publish_input(settings, sample_prefix)
    engine, metrics = Engine(engine_params(settings)), Metrics()
    source, sink, states = transport(settings, engine, metrics)
    failing = FailsOneFlush(sink, failing=0)  # none, until the fault below
    parse = KafkaBatch.parse

    def fails_once(batch: KafkaBatch) -> ParsedBatch:
        if failing.failing == 0 and len(batch.by_partition) > 1:
            failing.failing = failing.flushes + 2  # the flush of its second record alone
            raise RuntimeError("a fault no stage isolated (the test's)")
        return parse(batch)

    monkeypatch.setattr(KafkaBatch, "parse", fails_once)
    pipeline = Pipeline(source, engine, failing, metrics, states=states, overlap=overlap)
    try:
        wait_for(lambda: _stepped_all(pipeline), "every tick delivered", WAIT_S)
        pipeline.settle()
    finally:
        pipeline.sink.close()
        pipeline.source.close()

    assert failing.flushes >= failing.failing > 0  # the fault and the failed flush happened
    assert pipeline.totals.received == PREFIX_ROWS  # each delivered once
    forecasts = read_until_complete(settings, expected_keys(sample_prefix))
    assert set(forecast_keys(forecasts)) == expected_keys(sample_prefix)
    inputs = read_topic(settings.bootstrap_servers, settings.input_topic,
                        lambda records: len(records) >= PREFIX_ROWS, WAIT_S)  # fmt: skip
    assert committed_up_to(settings, end_offsets_of(inputs)) == end_offsets_of(inputs)


def _stepped_all(pipeline: Pipeline) -> bool:
    """One step (a failed delivery is retried at once); whether every tick was delivered."""
    try:
        pipeline.step()
    except DeliveryError:
        return False
    return pipeline.totals.received >= PREFIX_ROWS
