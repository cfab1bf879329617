"""The source and sink protocols every transport implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

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


BatchT = TypeVar("BatchT", bound=SourceBatch)


class Source(Protocol[BatchT]):
    def poll(self, timeout: float) -> BatchT | None:
        """The next batch (possibly empty) within ``timeout`` seconds; None once exhausted."""
        ...

    def commit(self, batch: BatchT) -> None:
        """Mark ``batch`` done: it will not be delivered again after a restart."""
        ...

    def connected(self) -> bool:
        """Whether the source can deliver now (a broker is reachable, a file is open)."""
        ...

    def restoring(self) -> int:
        """How many of its partitions wait for their state to be restored."""
        ...

    def close(self) -> None: ...


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
