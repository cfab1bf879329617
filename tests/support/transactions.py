"""Reading a topic as a ``read_committed`` consumer of a complete Kafka broker does.

Tansu 0.6.0 (the test broker) writes transaction markers and holds a read_committed
fetch below the last stable offset, but returns no aborted-transactions list with a
fetch, so kafka-python's read_committed consumer hands over the records of aborted
transactions as if they were committed. ``read_committed`` applies the markers itself: it
records every producer batch and marker the consumer's fetcher passes, and hands over a
transactional record only once its producer's commit marker follows it (an abort marker
hides it for good), as a broker's aborted-transaction index makes a consumer do.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import Fetcher
from kafka.errors import KafkaError

from forecaster.io.kafka import construct


@dataclass(frozen=True)
class BatchSeen:
    """A producer batch or transaction marker at offsets ``first``..``last``."""

    first: int
    last: int
    producer: int
    transactional: bool
    marker: bool
    abort: bool


@dataclass
class Markers:
    """The batches and markers seen, per partition, keyed by first offset (a batch fetched
    twice is seen twice)."""

    seen: dict[int, dict[int, BatchSeen]] = field(default_factory=dict)

    def hidden(self, partition: int) -> list[tuple[int, int]]:
        """Offset ranges of ``partition`` not to hand over: aborted or still undecided."""
        pending: dict[int, list[tuple[int, int]]] = {}
        hidden: list[tuple[int, int]] = []
        for batch in sorted(self.seen.get(partition, {}).values(), key=lambda b: b.first):
            if batch.marker:
                decided = pending.pop(batch.producer, [])
                if batch.abort:
                    hidden += decided
            elif batch.transactional:
                pending.setdefault(batch.producer, []).append((batch.first, batch.last))
        hidden += [span for spans in pending.values() for span in spans]
        return sorted(hidden)

    def committed(self, records: list[Any]) -> list[Any]:
        """``records`` without those of aborted or undecided transactions."""
        spans = {p: self.hidden(p) for p in {record.partition for record in records}}
        return [r for r in records if not _inside(spans[r.partition], r.offset)]


def _inside(spans: list[tuple[int, int]], offset: int) -> bool:
    at = bisect.bisect_right(spans, (offset, float("inf"))) - 1
    return at >= 0 and spans[at][0] <= offset <= spans[at][1]


def recording_fetches(markers: Markers) -> type[Any]:
    """kafka-python's PartitionRecords, noting every producer batch and marker in ``markers``."""

    class Recording(Fetcher.PartitionRecords):  # type: ignore[misc]
        def _contains_abort_marker(self, batch: Any) -> bool:
            abort = bool(super()._contains_abort_marker(batch))
            partition = markers.seen.setdefault(self.topic_partition.partition, {})
            partition[batch.base_offset] = BatchSeen(
                batch.base_offset, batch.last_offset, batch.producer_id,
                batch.is_transactional, batch.is_control_batch, abort,
            )  # fmt: skip
            return abort

    return Recording


def read_committed(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout_s: float,
    to_the_end: bool = False,
) -> list[Any]:
    """Every committed record of ``topic`` from the beginning, read until ``done(records)``
    holds for the committed ones (and, ``to_the_end``, every record there was when the
    read began has been read: call it once no transaction is open) or time is up."""
    consumer = construct(
        KafkaConsumer, {"bootstrap_servers": bootstrap, "isolation_level": "read_committed"}
    )[0]
    markers = Markers()
    consumer._fetcher.PartitionRecords = recording_fetches(markers)
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions) if to_the_end else {}

        def finished() -> bool:
            at_end = all(consumer.position(tp) >= end for tp, end in ends.items())
            return at_end and done(markers.committed(records))

        deadline = time.monotonic() + timeout_s
        while not finished() and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
    finally:
        with contextlib.suppress(KafkaError):
            consumer.close()
    return markers.committed(records)
