"""The protocols every transport implements: sources, their batches, sinks, and the
partition lifecycle a partitioned source reports.

A transport moves records and offsets, nothing else: what a batch's records mean
(parsing), what state they step (``forecaster.state``) and in which order it all happens
(``forecaster.pipeline``) are not its business.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import ParsedBatch, Rejected


class SourceBatch(Protocol):
    """Raw records as received; parsing is the pipeline's next step."""

    def parse(self) -> ParsedBatch: ...

    def origin(self, position: int) -> dict[str, Any]:
        """Where the record at ``position`` came from (file and line, topic/partition/offset)."""
        ...

    def dead_letter(self, rejected: Rejected) -> DeadLetter:
        """The dead letter of a rejected record: its origin, and its key and headers if any."""
        ...

    def split(self) -> list[SourceBatch]:
        """One batch per record, in order (to find the record a whole batch failed on)."""
        ...

    def unprocessable(self, detail: str) -> DeadLetter:
        """The internal_error dead letter of a batch of one record that could not be
        processed at all (not even parsed)."""
        ...

    def next_offsets(self) -> dict[int, int]:
        """Per partition, the offset after the batch's last record (what a commit records)."""
        ...

    def without(self, partitions: Collection[int]) -> Self:
        """The batch without the records of ``partitions`` (they will be fetched again)."""
        ...


BatchT = TypeVar("BatchT", bound=SourceBatch)


class Source(Protocol[BatchT]):
    def poll(self, timeout: float) -> BatchT | None:
        """The next batch (possibly empty) within ``timeout`` seconds; None once exhausted."""
        ...

    def commit(self, batch: BatchT) -> None:
        """Mark ``batch`` done: it will not be delivered again after a restart."""
        ...

    def rewind(self, batch: BatchT) -> None:
        """Hand ``batch``'s records over again from the next poll on (its delivery failed).
        Of batches rewound one after another, the last rewound is handed over first, so
        rewinding the latest first hands them all over again in order."""
        ...

    def seek(self, positions: Mapping[int, int | None]) -> None:
        """Continue each partition at its offset (None: at its first offset)."""
        ...

    def connected(self) -> bool:
        """Whether the source can deliver now (a broker is reachable, a file is open)."""
        ...

    def close(self) -> None:
        """Stop; a partitioned source reports every partition it held as revoked."""
        ...


class PartitionListener(Protocol):
    """What a partitioned source reports as its consumer group moves partitions
    (``forecaster.state.partitions.PartitionStates`` implements it)."""

    def assign(self, committed: Mapping[int, int | None]) -> None:
        """Partitions now held, each with its committed offset (None if none)."""
        ...

    def revoke(self, partitions: Collection[int]) -> None:
        """Partitions handed to another member; called before they are."""
        ...

    def lose(self, partitions: Collection[int]) -> None:
        """Partitions taken away by an eviction: another member may own them already."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected record, where it came from, and its own key and headers (Kafka)."""

    rejected: Rejected
    origin: dict[str, Any]
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


class Sink(Protocol):
    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None: ...

    def flush(self) -> None:
        """Block until everything written so far is durable (acknowledged by its destination)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record to produce: ``partition`` None lets the key choose it."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    partition: int | None = None


class Transactions(Protocol):
    """Exactly once: per input partition, what a batch produced (forecasts, dead letters,
    checkpoints) and the input offset after it become visible together, or not at all.

    One transaction per input partition of a batch, owned by whoever holds that partition:
    ``own`` fences every earlier owner (its open transaction is aborted, its later ones are
    refused), so an instance that lost a partition can no longer commit for it.
    """

    def own(self, partitions: Collection[int]) -> None:
        """Hold ``partitions`` from now on; call before reading their committed offsets.
        Raises if the fencing cannot be done now (the caller tries again)."""
        ...

    def disown(self, partitions: Collection[int], complete: bool) -> None:
        """Stop holding ``partitions``: commit what is open for them (``complete``, a
        revoke's last checkpoint) or abort it (lost)."""
        ...

    def owned(self) -> set[int]:
        """The partitions held (a partition whose transaction failed is no longer held)."""
        ...

    def send(self, partition: int, record: OutRecord) -> None:
        """Add ``record`` to the open transaction of input ``partition`` (begun if none)."""
        ...

    def commit(self, offsets: Mapping[int, int]) -> set[int]:
        """Commit every open transaction with its partition's next input offset (if in
        ``offsets``); returns the partitions whose transaction failed and was aborted."""
        ...

    def abort(self) -> None:
        """Abort every open transaction (its batch will be processed again)."""
        ...

    def close(self) -> None: ...
