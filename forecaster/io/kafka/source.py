"""The Kafka source: a consumer group member polling the input topic.

It moves records and offsets, nothing else. As the group moves partitions it reports
them to a ``PartitionListener`` (revoked and lost from kafka-python's listener, inside
``poll``; assigned right after the poll, with their committed offsets, a blocking call
the listener may not make on kafka-python's IO thread), and it seeks where it is told.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from forecaster.backoff import Backoff
from forecaster.config import Settings
from forecaster.core.ticks import (
    DEFAULT_LIMITS,
    InputLimits,
    ParsedBatch,
    Rejected,
    RejectReason,
    parse_messages,
)
from forecaster.io.base import DeadLetter, PartitionListener, SourceBatch, Transactions
from forecaster.io.kafka.client import (
    CLOSE_TIMEOUT_S,
    ConsumerRecord,
    consumer_connector,
    reaches_a_broker,
)
from forecaster.ops.metrics import Metrics
from forecaster.params import input_limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaBatch:
    """Records of one poll, partition by partition, each partition in offset order.

    ``require_key``: a tick whose message key is not its series id is rejected
    (key_mismatch), since state and order are per partition and the key picks it.
    """

    by_partition: dict[TopicPartition, list[ConsumerRecord]]
    limits: InputLimits = DEFAULT_LIMITS
    require_key: bool = False
    records: list[ConsumerRecord] = field(init=False)

    def __post_init__(self) -> None:
        records = [record for batch in self.by_partition.values() for record in batch]
        object.__setattr__(self, "records", records)

    def parse(self) -> ParsedBatch:
        values = [record.value or b"" for record in self.records]
        parsed = parse_messages(values, self.limits, now_ns=time.time_ns())
        partitions = np.fromiter((r.partition for r in self.records), np.int32, len(self.records))
        parsed.ticks.partition = partitions[parsed.ticks.position]
        if self.require_key:
            _reject_key_mismatches(parsed, self.records)
        return parsed

    def origin(self, position: int) -> dict[str, Any]:
        record = self.records[position]
        key = None if record.key is None else bytes(record.key).decode("utf-8", "replace")
        return {"topic": record.topic, "partition": record.partition, "offset": record.offset,
                "key": key}  # fmt: skip

    def dead_letter(self, rejected: Rejected) -> DeadLetter:
        record = self.records[rejected.position]
        key = None if record.key is None else bytes(record.key)
        headers = tuple((str(name), bytes(value or b"")) for name, value in record.headers or ())
        return DeadLetter(rejected, self.origin(rejected.position), key, headers)

    def split(self) -> list[SourceBatch]:
        return [
            KafkaBatch({tp: [record]}, self.limits, self.require_key)
            for tp, records in self.by_partition.items()
            for record in records
        ]

    def unprocessable(self, detail: str) -> DeadLetter:
        raw = bytes(self.records[0].value or b"")
        return self.dead_letter(Rejected(0, raw, RejectReason.INTERNAL_ERROR, detail))

    def first_offsets(self) -> dict[TopicPartition, int]:
        return {tp: int(records[0].offset) for tp, records in self.by_partition.items()}

    def positions_after(self) -> dict[TopicPartition, int]:
        """Per topic-partition, the offset after the batch's last record."""
        return {tp: int(records[-1].offset) + 1 for tp, records in self.by_partition.items()}

    def next_offsets(self) -> dict[int, int]:
        return {tp.partition: offset for tp, offset in self.positions_after().items()}

    def without(self, partitions: Collection[int]) -> KafkaBatch:
        if not partitions:
            return self
        kept = {tp: r for tp, r in self.by_partition.items() if tp.partition not in partitions}
        return KafkaBatch(kept, self.limits, self.require_key)


def _reject_key_mismatches(parsed: ParsedBatch, records: list[ConsumerRecord]) -> None:
    """Move every tick whose record key is not its series id (UTF-8) to the rejects."""
    ticks = parsed.ticks
    keys = [records[position].key for position in ticks.position.tolist()]
    ids = map(str.encode, ticks.series)  # a key of None, or of other bytes, is no match
    matches = np.fromiter(map(operator.eq, keys, ids), bool, len(keys))
    if matches.all():
        return
    for i in np.flatnonzero(~matches).tolist():
        position = int(ticks.position[i])
        detail = f"message key {_shown(keys[i])} is not the series id {ticks.series[i][:64]!r}"
        parsed.rejects.append(
            Rejected(position, parsed.raw_of(position), RejectReason.KEY_MISMATCH, detail)
        )
    parsed.ticks = ticks.take(np.flatnonzero(matches))
    parsed.rejects.sort(key=lambda rejected: rejected.position)


def _shown(key: bytes | None) -> str:
    return "(none)" if key is None else repr(bytes(key)[:64])


ConsumerFactory = Callable[[ConsumerRebalanceListener], tuple[Any, Any]]


class GroupListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python's rebalance callbacks, passed on as partition numbers.

    ``rebalancing_since``: when a revoke no assignment has followed yet began.
    ``unreported``: partitions assigned whose committed offset is still to be read.
    ``transactions`` (exactly once) hear of partitions taken, after the listener, which may
    write a revoked partition's last checkpoint into its transaction.
    """

    def __init__(
        self, listener: PartitionListener | None, transactions: Transactions | None = None
    ) -> None:
        self.listener = listener
        self.transactions = transactions
        self.rebalancing_since: float | None = None
        self.unreported: set[TopicPartition] = set()
        self.revoked: set[TopicPartition] = set()
        self.reported: set[TopicPartition] = set()  # exactly once: held since reported

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._taken(revoked)
        if self.listener is not None:
            self.listener.revoke([tp.partition for tp in revoked])
        if self.transactions is not None:
            self.transactions.disown([tp.partition for tp in revoked], complete=True)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._taken(lost)
        if self.listener is not None:
            self.listener.lose([tp.partition for tp in lost])
        if self.transactions is not None:
            self.transactions.disown([tp.partition for tp in lost], complete=False)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.rebalancing_since = None
        self.unreported.update(assigned)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

    def _taken(self, partitions: set[TopicPartition]) -> None:
        self.rebalancing_since = time.monotonic()
        self.unreported -= partitions
        self.reported -= partitions
        self.revoked |= partitions


class KafkaSource:
    """A consumer group member polling ``input_topic``; see the module docstring.

    ``partitions`` hears of every partition assigned, revoked or lost. ``connect`` builds
    the subscribed consumer and its network client (tests pass fakes). With
    ``transactions`` (exactly once) the source commits no offsets itself: each batch's
    transactions do; a partition assigned is owned (its earlier owners fenced) before its
    committed offset is read.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        partitions: PartitionListener | None = None,
        connect: ConsumerFactory | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        self.metrics = metrics
        self.group = GroupListener(partitions, transactions)
        self.transactions = transactions
        # The longest a rebalance may take: the group waits up to the rebalance timeout
        # (max_poll_interval_ms) for members to rejoin, a session timeout for a dead one.
        self._rebalance_limit_s = (
            settings.max_poll_interval_ms + settings.session_timeout_ms
        ) / 1000
        # While the member joins its group, poll for as long as a join round may take:
        # kafka-python 3.0.12 starts a new round when a poll returns between the SyncGroup
        # answer and its use, throwing the assignment away (a round costs about half the
        # session timeout on the test broker), so short polls during a join lose rounds.
        self._join_poll_s = settings.session_timeout_ms / 2000 + 1.0
        self._limits = input_limits(settings)
        self._require_key = settings.require_series_key
        self._commit_timeout_ms = settings.request_timeout_ms
        self._topic = settings.input_topic
        self._group_id = settings.group_id
        self._connect = connect or consumer_connector(settings)
        self._consumer: Any = None
        self._net_client: Any = None
        self._backoff = Backoff(longest=settings.reconnect_backoff_max_ms / 1000)
        self._done: dict[TopicPartition, int] = {}  # offsets to commit
        self._acknowledged: dict[TopicPartition, int] = {}
        self._lag_labels: set[str] = set()

    def poll(self, timeout: float) -> KafkaBatch:
        consumer = self._connected_consumer()
        if consumer is None:
            time.sleep(timeout)
            return KafkaBatch({})
        if self.group.rebalancing_since is not None or not consumer.assignment():
            timeout = max(timeout, self._join_poll_s)
        try:
            polled = consumer.poll(timeout_ms=int(timeout * 1000))
            sought = self._report_assigned(consumer)
            assigned = consumer.assignment()
        except KafkaError as exc:
            log.warning("Kafka poll failed: %s", exc)
            return KafkaBatch({})
        self._forget_revoked()
        if self._rebalance_stalled():
            self._rejoin()
            return KafkaBatch({})
        # kafka-python already drops records of partitions revoked during the poll; those of
        # partitions whose committed offset is still to be read, or that were just sought
        # to it, are fetched again.
        held_back = self.group.unreported | sought
        mine = {tp: records for tp, records in polled.items()
                if tp in assigned and tp not in held_back}  # fmt: skip
        batch = KafkaBatch(mine, self._limits, self._require_key)
        self._report_lag(consumer, batch, assigned)
        return batch

    def _report_assigned(self, consumer: Any) -> set[TopicPartition]:
        """Tell the listener of the partitions the poll assigned, with committed offsets;
        returns those sought to their committed offset (exactly once)."""
        if self.transactions is not None:
            return self._report_owned(consumer)
        unreported, self.group.unreported = self.group.unreported, set()
        if unreported and self.group.listener is not None:
            committed = {tp.partition: _committed_offset(consumer, tp) for tp in unreported}
            self.group.listener.assign(committed)
        return set()

    def _report_owned(self, consumer: Any) -> set[TopicPartition]:
        """Exactly once: own the partitions assigned (fencing their earlier owners), then
        report them with their committed offsets. Until both succeed they stay unreported
        (their records are not handed over) and are tried again after the next poll. A
        partition whose transaction failed is no longer owned: it is taken again so."""
        transactions = self.transactions
        assert transactions is not None
        owned = transactions.owned()
        failed = {tp for tp in self.group.reported if tp.partition not in owned}
        self.group.reported -= failed
        self.group.unreported |= failed
        unreported: set[TopicPartition] = self.group.unreported & consumer.assignment()
        if not unreported:
            return set()
        try:
            transactions.own([tp.partition for tp in unreported])
            committed = {tp: consumer.committed(tp) for tp in unreported}
        except KafkaError as exc:
            log.warning("partitions %s not taken yet (%s); trying again", sorted(
                tp.partition for tp in unreported), exc)  # fmt: skip
            return set()
        self.group.unreported -= unreported
        self.group.reported |= unreported
        for tp in unreported:  # their records of this poll are not handed over (``poll``)
            self.seek({tp.partition: committed[tp]})
        if self.group.listener is not None:
            self.group.listener.assign({tp.partition: offset for tp, offset in committed.items()})
        return unreported

    def group_metadata(self) -> Any:
        """The consumer's group metadata (for transactional offsets); the group id while
        not connected."""
        if self._consumer is None:
            return self._group_id
        return self._consumer.group_metadata()

    def _forget_revoked(self) -> None:
        for tp in self.group.revoked:
            self._done.pop(tp, None)
        self.group.revoked.clear()

    def _connected_consumer(self) -> Any:
        if self._consumer is None and self._backoff.due():
            try:
                self._consumer, self._net_client = self._connect(self.group)
                self._backoff.succeeded()
                log.info("connected to Kafka")
            except KafkaError as exc:
                log.warning("Kafka not reachable (%s); next attempt in %.1f s", exc,
                            self._backoff.failed())  # fmt: skip
        return self._consumer

    def _rebalance_stalled(self) -> bool:
        since = self.group.rebalancing_since
        return since is not None and time.monotonic() - since > self._rebalance_limit_s

    def _rejoin(self) -> None:
        """Leave the group and join it again: kafka-python can lose a rebalance's outcome
        (see ``connect_consumer``) and then sit in the group with no partition for good."""
        log.warning("no partition assigned %.0f s after a rebalance began; joining the group "
                    "again", self._rebalance_limit_s)  # fmt: skip
        self.metrics.kafka_rejoins.inc()
        consumer, self._consumer, self._net_client = self._consumer, None, None
        with contextlib.suppress(KafkaError):
            consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
        self._forget_revoked()
        self.group.rebalancing_since = None  # the close revoked too; the next join starts

    def rewind(self, batch: KafkaBatch) -> None:
        """Poll ``batch`` again from its first offsets (partitions still assigned; a revoked
        one's new owner starts from the committed offset)."""
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        for tp, offset in batch.first_offsets().items():
            if tp in assigned:
                log.info("partition %d: polling again from offset %d (batch not delivered)",
                         tp.partition, offset)  # fmt: skip
                self._consumer.seek(tp, offset)

    def seek(self, positions: Mapping[int, int | None]) -> None:
        """Continue at restored states' offsets; those offsets are committed with the next
        batch (every forecast before them was delivered). A partition the group has taken
        away meanwhile is left to its next owner."""
        if self._consumer is None or not positions:
            return
        assigned = self._consumer.assignment()
        for partition, offset in positions.items():
            tp = TopicPartition(self._topic, partition)
            if tp not in assigned:
                log.info("partition %d: no longer assigned, not sought", partition)
            elif offset is None:
                self._consumer.seek_to_beginning(tp)
                self._done.pop(tp, None)
            else:
                self._consumer.seek(tp, offset)
                if self.transactions is None:
                    self._done[tp] = offset

    def _report_lag(self, consumer: Any, batch: KafkaBatch, assigned: set[TopicPartition]) -> None:
        gauge = self.metrics.kafka_consumer_lag
        for label in self._lag_labels - {str(tp.partition) for tp in assigned}:
            gauge.remove(label)
            self._lag_labels.discard(label)
        for tp, offset in batch.positions_after().items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                gauge.labels(str(tp.partition)).set(highwater - offset)
                self._lag_labels.add(str(tp.partition))

    def commit(self, batch: KafkaBatch) -> None:
        """Commit the batch's offsets, and any earlier ones whose commit failed.

        A failed commit is logged and retried with the next batch: the worst it can do
        is let a restart repeat forecasts, never skip a tick.
        """
        if self.transactions is None:
            self._done.update(batch.positions_after())
            self._commit_done()

    def _commit_done(self) -> None:
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        due = {
            tp: offset
            for tp, offset in self._done.items()
            if tp in assigned and self._acknowledged.get(tp) != offset
        }
        if not due:
            return
        started = time.perf_counter()
        try:
            self._consumer.commit(
                {tp: OffsetAndMetadata(o, "", -1) for tp, o in due.items()},
                timeout_ms=self._commit_timeout_ms,  # kafka-python's default waits forever
            )
        except KafkaError as exc:
            log.warning("offset commit failed (%s); retried with the next batch", exc)
            return
        self.metrics.kafka_commit_seconds.observe(time.perf_counter() - started)
        self._acknowledged.update(due)

    def connected(self) -> bool:
        return self._net_client is not None and reaches_a_broker(self._net_client)

    def close(self) -> None:
        """Commit what is due, then leave the group (its listener hands off every partition)."""
        if self._consumer is not None:
            self._commit_done()
            self._consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
            self._consumer = self._net_client = None
        if self.transactions is not None:
            self.transactions.close()


def _committed_offset(consumer: Any, tp: TopicPartition) -> int | None:
    """The group's committed offset of ``tp``; None if there is none or it cannot be read."""
    try:
        offset = consumer.committed(tp)
    except KafkaError as exc:
        log.warning("cannot read the committed offset of partition %d: %s", tp.partition, exc)
        return None
    return None if offset is None else int(offset)
