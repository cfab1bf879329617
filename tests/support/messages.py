"""Kafka records held in a list, handed to a pipeline as a consumer's polls would: for
tests of the data path that need no broker.

    records = [Record("ticks", 0, offset, key, value, []) for ...]
    pipeline = Pipeline(ListSource(records, size=4), engine, sink, Metrics())
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from dataclasses import dataclass

from kafka import TopicPartition

from forecaster.core.ticks import DEFAULT_LIMITS, InputLimits
from forecaster.io.kafka import KafkaBatch

TOPIC = TopicPartition("ticks", 0)
Record = namedtuple("Record", "topic partition offset key value headers")


@dataclass
class ListSource:
    """Hands out the records (of partition 0 of "ticks") in batches of ``size``."""

    records: list[Record]
    size: int
    limits: InputLimits = DEFAULT_LIMITS
    require_key: bool = False
    committed: int = 0

    def poll(self, timeout: float) -> KafkaBatch | None:
        if self.committed >= len(self.records):
            return None
        chunk = self.records[self.committed : self.committed + self.size]
        return KafkaBatch({TOPIC: chunk}, self.limits, self.require_key)

    def commit(self, batch: KafkaBatch) -> None:
        self.committed = batch.next_offsets()[TOPIC.partition]

    def rewind(self, batch: KafkaBatch) -> None:
        """Nothing to do: a poll hands over from the committed record on."""

    def seek(self, positions: Mapping[int, int | None]) -> None:
        raise AssertionError(f"no partition state asks a list to seek: {dict(positions)}")

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        pass
