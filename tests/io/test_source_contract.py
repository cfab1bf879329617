"""The contract every Source keeps: one suite, run against every implementation (a tick
file, a Kafka topic on a real broker), as River and Quix Streams hold their transports
to one behaviour. A new source passes this suite before anything else uses it."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from forecaster.config import Settings
from forecaster.core.ticks import RejectReason
from forecaster.io.base import Source, SourceBatch
from forecaster.io.files import CsvSource
from forecaster.io.kafka import KafkaSource
from forecaster.io.produce import publish
from forecaster.ops.metrics import Metrics
from tests.support.broker import create_topics
from tests.support.kafka import KAFKA_CLIENTS, WAIT_S

SERIES, TICKS = ("A", "B", "C"), 8
BAD_ROWS = [("A", "not a time", "1.0"), ("", "1767225600000", "1.0")]
ROWS = [
    (series, str(1_767_225_600_000 + 1000 * t), f"{100 + t + i:.2f}")
    for t in range(TICKS)
    for i, series in enumerate(SERIES)
] + BAD_ROWS
BATCH = 4


@dataclass
class Case:
    """An implementation under contract: ``open(path)`` is a source of the ticks the CSV
    at ``path`` holds, handing them over in batches of at most BATCH records."""

    name: str
    open: Callable[[Path], Source[Any]]


def csv_case() -> Case:
    return Case("csv", lambda path: CsvSource(path, max_batch=BATCH))


def kafka_case(settings: Settings, client: str) -> Case:
    def open_topic(path: Path) -> Source[Any]:
        config = replace(settings, poll_max_records=BATCH, kafka_client=client)
        create_topics(config.bootstrap_servers, {config.input_topic: 2})
        publish(config, path, config.input_topic)
        return KafkaSource(config, Metrics())

    return Case(client, open_topic)


@pytest.fixture(params=["csv", *(pytest.param(c, marks=pytest.mark.kafka) for c in KAFKA_CLIENTS)])
def case(request: pytest.FixtureRequest) -> Case:
    if request.param == "csv":
        return csv_case()
    return kafka_case(request.getfixturevalue("settings"), request.param)


@pytest.fixture
def source(case: Case, tmp_path: Path) -> Iterator[Source[Any]]:
    path = tmp_path / "ticks.csv"
    pd.DataFrame(ROWS, columns=["series", "ts", "price"]).to_csv(path, index=False)
    opened = case.open(path)
    yield opened
    opened.close()


def received(batch: SourceBatch) -> list[str]:
    """What a batch holds, record by record: a tick's series and ts, or a reject's reason."""
    parsed = batch.parse()
    ticks = parsed.ticks
    rows = zip(ticks.position.tolist(), ticks.series, ticks.ts.tolist(), strict=True)
    items = {position: f"{series}@{ts}" for position, series, ts in rows}
    items.update({r.position: f"rejected {r.reason.value}" for r in parsed.rejects})
    return [items[position] for position in sorted(items)]


def expected_records() -> Counter[str]:
    ticks = [f"{s}@{int(ts) * 1_000_000}" for s, ts, _ in ROWS[: len(ROWS) - len(BAD_ROWS)]]
    return Counter([*ticks, "rejected ts_format", "rejected missing_series"])


def drain(source: Source[Any], count: int, commit: bool = True) -> list[SourceBatch]:
    """Non-empty batches until ``count`` records came (or the source is exhausted),
    polling back to back as the pipeline does (a member that polls seldom joins its
    group slowly)."""
    batches: list[SourceBatch] = []
    received = 0
    deadline = time.monotonic() + WAIT_S
    while received < count and time.monotonic() < deadline:
        batch = source.poll(0.2)
        if batch is None:
            break  # a file ran out: nothing more will come
        if batch.parse().received:
            batches.append(batch)
            received += batch.parse().received
            if commit:
                source.commit(batch)
    return batches


def test_every_record_is_handed_over_once_in_order_with_what_a_batch_owes(
    source: Source[Any],
) -> None:
    batches = drain(source, len(ROWS))
    records = [item for batch in batches for item in received(batch)]
    assert Counter(records) == expected_records()
    for series in SERIES:  # a series' ticks keep their order (one partition)
        mine = [r for r in records if r.startswith(f"{series}@")]
        assert mine == sorted(mine, key=lambda r: int(r.split("@")[1]))
    assert source.connected()

    reached: dict[int, int] = {}
    for batch in batches:
        offsets = batch.next_offsets()
        assert offsets, "a batch with records has offsets to commit"
        for partition, offset in offsets.items():
            assert offset > reached.get(partition, -1)
            reached[partition] = offset
        assert received(batch.without(set())) == received(batch)
        assert batch.without(set(offsets)).parse().received == 0
        singles = batch.split()
        assert [item for single in singles for item in received(single)] == received(batch)
        letter = singles[0].unprocessable("a test's fault")
        assert letter.rejected.reason is RejectReason.INTERNAL_ERROR
        json.dumps(letter.origin)
        for rejected in batch.parse().rejects:
            origin = batch.dead_letter(rejected).origin
            assert origin and json.dumps(origin)


def test_a_rewound_batch_is_handed_over_again_before_the_rest(source: Source[Any]) -> None:
    first = drain(source, 1, commit=False)[0]
    source.rewind(first)
    again = drain(source, len(ROWS))
    records = Counter(item for batch in again for item in received(batch))
    assert records == expected_records()  # the rewound records come again, and the rest


def test_records_rewound_latest_first_are_all_handed_over_again(source: Source[Any]) -> None:
    """As the pipeline rewinds a batch it processed record by record when one record was
    not delivered: that record and every one after it, the latest first."""
    singles = [single for batch in drain(source, BATCH, commit=False) for single in batch.split()]
    assert len(singles) >= BATCH
    for single in reversed(singles):
        source.rewind(single)
    again = drain(source, len(ROWS))
    records = Counter(item for batch in again for item in received(batch))
    assert records == expected_records()
