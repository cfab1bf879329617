"""State checkpoints in a compacted Kafka topic: any instance of the group can restore them.

The store keeps one record set per input partition's checkpoint, not one record per
series. A checkpoint is one consistent cut of every series of a partition at one input
offset, and a restore needs exactly that cut. Per-series records would each carry their
own offset, and a crash in the middle of writing them would leave a mix of two cuts.

Layout of ``changelog_topic``. It has at least as many partitions as the input topic
(``ensure_changelog`` creates it so). Input partition ``p`` keeps its checkpoints in
changelog partition ``p``:

    key      ``<p>/<slot>/<chunk>``; slot 0 or 1, chunk 0, 1, ...
    value    up to CHUNK_BYTES of the checkpoint's bytes (``checkpoint.encode``: arrays
             with a SHA-256 per array, never pickled); chunks fit Kafka's default
             1 MiB record limit
    headers  ``forecaster.state.checkpoint.id`` (one per write), ``.offset``, ``.chunk``,
             ``.chunks``

Compaction keeps the newest record of each key. The two slots alternate like
``current``/``previous`` of a state directory. Writing a checkpoint, step by step:

1. Snapshot the partition's state right after a batch's offsets were committed (the
   caller, as for a directory).
2. Encode it and cut it into chunks.
3. Send every chunk to the slot that does not hold the newest whole checkpoint.
4. Await the acknowledgement of every chunk. Only then is it the newest whole one.

A crash at any step leaves the other slot whole. Restoring reads the changelog partition
from its first offset to its end. It keeps the newest record of each key and assembles
each slot whose chunks share one id and are all there. It checks each assembled slot as
a directory checkpoint is checked (``checkpoint.checked``), and takes the one at the
highest offset. Any whole checkpoint is a consistent (state, offset) pair. Resuming at its
offset therefore repeats forecasts at worst, and never changes one.

>>> records = chunk_records(3, 1, b"abcdefg", 42, "id", size=3)
>>> chunks = [Chunk.of(*record, position=i) for i, record in enumerate(records)]
>>> [(c.key, c.index, c.count, c.data) for c in chunks]
[('3/1/0', 0, 3, b'abc'), ('3/1/1', 1, 3, b'def'), ('3/1/2', 2, 3, b'g')]
>>> [(w.slot, w.offset, w.data) for w in whole_checkpoints(chunks)]
[(1, 42, b'abcdefg')]
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAlreadyExistsError

from forecaster.config import Settings
from forecaster.core.engine import EngineParams, PartitionState
from forecaster.errors import ForecasterError
from forecaster.io.base import OutRecord, Transactions
from forecaster.io.kafka import (
    CLOSE_TIMEOUT_S,
    client_configs,
    close_producer,
    construct,
    producer_configs,
)
from forecaster.ops.metrics import Metrics
from forecaster.state.checkpoint import Checkpoint, checked, encode

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024
# The most chunks one checkpoint may have (32 GiB, far beyond any partition's state): a
# record claiming more is refused before anything is sized by its claim.
MAX_CHUNKS = 1 << 16
CHUNK_KEY = re.compile(r"([0-9]{1,10})/([01])/([0-9]{1,10})")  # partition/slot/chunk
RECORD_OVERHEAD_BYTES = 64 * 1024  # key, headers and batch framing around a chunk
HEADER = "forecaster.state.checkpoint."
TOPIC_EXISTS = TopicAlreadyExistsError.errno
# Compaction only cleans closed segments: roll them every 10 minutes, so a restore reads
# little more than the last two checkpoints of each partition.
CHANGELOG_CONFIGS = {"cleanup.policy": "compact", "segment.ms": "600000",
                     "min.cleanable.dirty.ratio": "0.1"}  # fmt: skip


class ChangelogError(ForecasterError):
    """The changelog topic cannot be read or is not fit to hold the state."""


Record = tuple[str, bytes, list[tuple[str, bytes]]]  # key, value, headers


def chunk_records(
    partition: int,
    slot: int,
    data: bytes,
    offset: int,
    snapshot_id: str,
    *,
    size: int = CHUNK_BYTES,
) -> list[Record]:
    """Step 2: the records of one checkpoint's bytes ``data`` in ``slot``."""
    pieces = [data[start : start + size] for start in range(0, len(data), size)] or [b""]
    shared = [("id", snapshot_id), ("offset", str(offset)), ("chunks", str(len(pieces)))]
    return [
        (
            f"{partition}/{slot}/{index}",
            piece,
            [(HEADER + name, value.encode()) for name, value in [*shared, ("chunk", str(index))]],
        )
        for index, piece in enumerate(pieces)
    ]


@dataclass(frozen=True)
class Chunk:
    """One record of the changelog, as read back."""

    key: str
    partition: int  # the input partition whose checkpoint it belongs to
    slot: int
    index: int
    count: int
    snapshot_id: str
    offset: int  # the input offset of its checkpoint
    data: bytes
    position: int  # its own offset in the changelog: later records are newer writes

    @classmethod
    def of(cls, key: bytes | str | None, value: bytes | None, headers: Any, position: int) -> Chunk:
        """A record read back; ValueError if it is not a checkpoint chunk: a key other than
        ``<partition>/<0|1>/<chunk>``, headers missing, not UTF-8, or disagreeing with the
        key, a chunk count above MAX_CHUNKS, a negative offset."""
        name = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        try:
            return cls._parse(name, value, headers, position)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            detail = " ".join(str(exc).split())[:100]
            raise ValueError(f"changelog record {name[:80]!r} is not a checkpoint chunk: {detail}"
                             ) from exc  # fmt: skip

    @classmethod
    def _parse(cls, name: str, value: bytes | None, headers: Any, position: int) -> Chunk:
        key = CHUNK_KEY.fullmatch(name)
        if key is None:
            raise ValueError("its key is not <partition>/<slot>/<chunk>")
        fields = {header[len(HEADER) :]: bytes(v).decode() for header, v in headers or []
                  if header.startswith(HEADER)}  # fmt: skip
        index, count, offset = (_whole(fields[field]) for field in ("chunk", "chunks", "offset"))
        if index != int(key[3]) or not index < count <= MAX_CHUNKS or not fields["id"]:
            raise ValueError(f"headers chunk {index} of {count}, id {fields['id'][:40]!r}")
        return cls(name, int(key[1]), int(key[2]), index, count, fields["id"], offset,
                   bytes(value or b""), position)  # fmt: skip


@dataclass(frozen=True)
class WholeCheckpoint:
    slot: int
    offset: int
    data: bytes


def _whole(text: str) -> int:
    """A decimal integer >= 0, in plain ASCII digits (ValueError otherwise)."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise ValueError(f"{text[:40]!r} is not an integer >= 0")
    return int(text)


def whole_checkpoints(newest_per_key: Iterable[Chunk]) -> list[WholeCheckpoint]:
    """The slots whose chunks form one whole checkpoint, highest offset first."""
    by_slot: dict[int, list[Chunk]] = {}
    for chunk in newest_per_key:
        by_slot.setdefault(chunk.slot, []).append(chunk)
    whole = []
    for slot, chunks in by_slot.items():
        newest = max(chunks, key=lambda c: c.position)  # the last write to the slot
        write = (newest.snapshot_id, newest.count, newest.offset)
        parts = {c.index: c for c in chunks if (c.snapshot_id, c.count, c.offset) == write}
        if len(parts) == newest.count and sorted(parts) == list(range(newest.count)):
            data = b"".join(parts[i].data for i in range(newest.count))
            whole.append(WholeCheckpoint(slot, newest.offset, data))
    return sorted(whole, key=lambda w: w.offset, reverse=True)


class ChangelogStore:
    """Checkpoints of the input's partitions in ``settings.changelog_topic``.

    See the module docstring. ``save`` never raises: a failed write is logged and counted
    in ``checkpoint_failures``, and the service keeps forecasting. ``load`` raises
    ChangelogError when the topic cannot be read; the caller retries.
    """

    def __init__(
        self,
        settings: Settings,
        params: EngineParams,
        metrics: Metrics,
        transactions: Transactions | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.changelog_topic
        self.params = params
        self.metrics = metrics
        # Exactly once: chunks join their input partition's open transaction. They are read
        # back read_uncommitted all the same: Tansu 0.6.0 holds a read_committed ListOffsets
        # until the transactions open elsewhere time out, and hides no aborted record from
        # kafka-python anyway. ``load``'s ``at_most`` keeps out what no transaction committed.
        self.transactions = transactions
        self._producer: Any = None
        self._newest_slot: dict[int, int] = {}  # by partition: the slot of its newest whole one
        self._topic_checked = False

    def save(self, state: PartitionState, offset: int) -> bool:
        """Steps 2-4 of the module docstring; False (logged, counted) if a chunk failed."""
        started = time.perf_counter()
        partition = state.partition
        slot = 1 - self._newest_slot.get(partition, 1)
        data = encode(Checkpoint(state, offset), self.params)
        try:
            self._send(partition, chunk_records(partition, slot, data, offset, uuid.uuid4().hex))
        except KafkaError as exc:
            self.metrics.checkpoint_failures.inc()
            log.warning("checkpoint of partition %d at offset %d to %s failed: %s",
                        partition, offset, self.topic, exc)  # fmt: skip
            self._close_producer(timeout=0.0)
            return False
        self._newest_slot[partition] = slot
        self.metrics.checkpoint_completed(time.perf_counter() - started)
        return True

    def _send(self, partition: int, records: list[Record]) -> None:
        if self.transactions is not None:
            for key, value, headers in records:
                record = OutRecord(self.topic, key.encode(), value, headers, partition)
                self.transactions.send(partition, record)
            return
        if self._producer is None:
            self._producer = construct(KafkaProducer, self._producer_configs())[0]
        futures = [
            self._producer.send(
                self.topic, value=value, key=key.encode(), headers=headers, partition=partition
            )
            for key, value, headers in records
        ]
        self._producer.flush(timeout=self.settings.delivery_timeout_ms / 1000)
        for future in futures:
            future.get(timeout=0)  # raises the KafkaError of a record not acknowledged

    def _producer_configs(self) -> dict[str, Any]:
        return producer_configs(self.settings) | {
            "max_request_size": CHUNK_BYTES + RECORD_OVERHEAD_BYTES
        }

    def load(self, partition: int, at_most: int | None = None) -> Checkpoint | None:
        """The restore of the module docstring: the newest whole checkpoint of ``partition``
        that passes every check (at an offset of at most ``at_most``, if given); None if
        there is none. ChangelogError if unreadable."""
        if not self._topic_checked:
            try:
                ensure_changelog(self.settings)
            except KafkaError as exc:
                raise ChangelogError(f"cannot check {self.topic}: {exc}") from exc
            self._topic_checked = True
        chunks = self._read(partition)
        for whole in whole_checkpoints(chunks.values()):
            if at_most is not None and whole.offset > at_most:
                continue
            origin = f"{self.topic}[{partition}] slot {whole.slot}"
            checkpoint = checked(whole.data, origin, partition, self.params, self.metrics)
            if checkpoint is not None:
                self._newest_slot[partition] = whole.slot
                return checkpoint
        return None

    def _read(self, partition: int) -> dict[str, Chunk]:
        """The newest chunk of each key of changelog partition ``partition``."""
        tp = TopicPartition(self.topic, partition)
        stall_s = self.settings.request_timeout_ms / 1000
        try:
            reader = construct(KafkaConsumer, client_configs(self.settings))[0]
        except KafkaError as exc:
            raise ChangelogError(f"cannot reach Kafka to read {self.topic}: {exc}") from exc
        chunks: dict[str, Chunk] = {}
        try:
            reader.assign([tp])
            end = reader.end_offsets([tp])[tp]
            reader.seek_to_beginning(tp)
            progressed, position = time.monotonic(), -1
            while position < end:
                if position != (position := reader.position(tp)):
                    progressed = time.monotonic()
                elif time.monotonic() - progressed > stall_s:
                    raise ChangelogError(
                        f"{self.topic}[{partition}] stalled at {position} of {end}"
                    )
                for record in reader.poll(timeout_ms=200).get(tp, []):
                    self._keep(chunks, record, partition)
        except KafkaError as exc:
            raise ChangelogError(f"cannot read {self.topic}[{partition}]: {exc}") from exc
        finally:
            with contextlib.suppress(KafkaError):
                reader.close()
        return chunks

    def _keep(self, chunks: dict[str, Chunk], record: Any, partition: int) -> None:
        """Keep ``record`` of changelog partition ``partition`` if it is a chunk of that
        input partition's checkpoints (logged and ignored otherwise)."""
        try:
            chunk = Chunk.of(record.key, record.value, record.headers, record.offset)
            if chunk.partition != partition:
                raise ValueError(f"changelog record {chunk.key!r} in partition {partition}")
        except ValueError as exc:
            log.warning("%s: ignored", exc)
            return
        chunks[chunk.key] = chunk

    def close(self) -> None:
        self._close_producer(timeout=CLOSE_TIMEOUT_S)

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        close_producer(producer, timeout)


def ensure_changelog(settings: Settings) -> None:
    """Create ``changelog_topic`` (compacted, the input topic's partition count) if it is
    missing; ChangelogError if it has fewer partitions than the input topic."""
    admin = construct(KafkaAdminClient, client_configs(settings))[0]
    try:
        inputs = _partition_count(admin, settings.input_topic)
        answer = admin.create_topics(
            {settings.changelog_topic: {"num_partitions": inputs, "replication_factor": -1,
                                        "configs": CHANGELOG_CONFIGS}},
            raise_errors=False,
        )  # fmt: skip
        codes = [topic["error_code"] for topic in answer["topics"]]
        if any(code not in (0, TOPIC_EXISTS) for code in codes):
            raise ChangelogError(f"cannot create {settings.changelog_topic}: {answer['topics']}")
        changelog = _partition_count(admin, settings.changelog_topic)
    finally:
        admin.close()
    if changelog < inputs:
        raise ChangelogError(
            f"{settings.changelog_topic} has {changelog} partitions, fewer than the "
            f"{inputs} of {settings.input_topic}: the state of input partition p is kept in "
            "changelog partition p"
        )


def _partition_count(admin: Any, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])
