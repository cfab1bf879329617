"""Exactly once on kafka-python: one transactional producer per input partition held.

Each input partition ``p`` has its own transactional id, ``forecaster.<group>.<input
topic>.<p>``, the same in every instance (Kafka Streams' first exactly-once mode did the
same). Whoever takes ``p`` calls ``init_transactions`` with that id before it reads
``p``'s committed offset: the broker aborts the transaction the previous owner may have
left open and bumps the id's epoch, so every later request of the previous owner's
producer is refused (ProducerFencedError). That fences a zombie, an instance that was
paused past its session while another took its partitions, on any broker that supports
transactions; KIP-447's fencing by group generation (the consumer's group metadata is
passed with the offsets all the same) is not enforced by every broker: the test broker,
Tansu 0.6.0, commits transactional offsets of a stale generation.

A batch's records of partition ``p`` go into ``p``'s open transaction; ``commit`` adds
``p``'s next input offset to it (``send_offsets_to_transaction``) and commits it. A
transaction that fails is aborted and its producer closed: the partition goes back to
its last committed point, and taking it again (``own``) fences anything left of it.

Two things kafka-python 3.0.12 does not do are done here: a transaction is committed only
once every record in it was acknowledged (it would commit one whose records expired
undelivered, and the offsets would go out without their forecasts), and every wait on
the transaction coordinator is bounded (``bounded``): on Tansu a record or an EndTxn can
stay unanswered until the delivery timeout, or for good.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kafka import KafkaProducer, TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from forecaster.config import Settings
from forecaster.io.base import OutRecord
from forecaster.io.kafka.client import close_producer, construct, producer_configs
from forecaster.ops.metrics import Metrics

log = logging.getLogger(__name__)

ProducerFactory = Callable[[str], Any]  # transactional id -> an initialised producer


def transactional_id(settings: Settings, partition: int) -> str:
    """The id of input ``partition``'s transactions, the same in every instance.

    >>> transactional_id(Settings(group_id="g", input_topic="ticks"), 3)
    'forecaster.g.ticks.3'
    """
    return f"forecaster.{settings.group_id}.{settings.input_topic}.{partition}"


class KafkaTransactions:
    """The ``Transactions`` of ``forecaster.io.base`` on kafka-python; see the module
    docstring. ``group_metadata`` gives the consumer's group metadata for the offsets (the
    source sets it); ``connect`` builds an initialised producer (tests pass fakes)."""

    def __init__(
        self, settings: Settings, metrics: Metrics, connect: ProducerFactory | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.group_metadata: Callable[[], Any] = lambda: settings.group_id
        self._connect = connect or self._initialised_producer
        self._producers: dict[int, Any] = {}
        self._open: set[int] = set()
        self._sent: dict[int, list[Any]] = {}  # the open transactions' records (futures)

    def _initialised_producer(self, tid: str) -> Any:
        configs = producer_configs(self.settings) | {"transactional_id": tid}
        producer = construct(KafkaProducer, configs)[0]
        try:
            producer.init_transactions()
        except KafkaError:
            close_producer(producer, timeout=0.0)
            raise
        return producer

    def own(self, partitions: Collection[int]) -> None:
        for partition in sorted(partitions):
            if partition not in self._producers:
                tid = transactional_id(self.settings, partition)
                self._producers[partition] = self._connect(tid)
                log.info("partition %d: transactions of %s initialised (earlier owners fenced)",
                         partition, tid)  # fmt: skip

    def disown(self, partitions: Collection[int], complete: bool) -> None:
        if complete:
            self.commit({}, only=partitions)
        for partition in partitions:
            if partition in self._open:
                self.metrics.transactions_aborted.inc()
            self._drop(partition)

    def owned(self) -> set[int]:
        return set(self._producers)

    def send(self, partition: int, record: OutRecord) -> None:
        producer = self._producers.get(partition)
        if producer is None:
            raise KafkaError(f"partition {partition} is not held: its transactions are fenced")
        if partition not in self._open:
            producer.begin_transaction()
            self._open.add(partition)
            self._sent[partition] = []
        future = producer.send(record.topic, value=record.value, key=record.key,
                               headers=record.headers, partition=record.partition)  # fmt: skip
        self._sent[partition].append(future)

    def commit(self, offsets: Mapping[int, int], only: Collection[int] | None = None) -> set[int]:
        """Commit the open transactions (of ``only``, if given); see ``Transactions``."""
        started = time.perf_counter()
        due = sorted(self._open if only is None else self._open & set(only))
        failed = {partition for partition in due if not self._committed(partition, offsets)}
        if due:
            self.metrics.transaction_commit_seconds.observe(time.perf_counter() - started)
        return failed

    def _committed(self, partition: int, offsets: Mapping[int, int]) -> bool:
        producer = self._producers[partition]
        self._open.discard(partition)
        sent = self._sent.pop(partition, [])
        try:
            # kafka-python 3.0.12 commits a transaction whose records expired undelivered:
            # the offsets would go out without their forecasts. So every record must be
            # acknowledged before the offsets join the transaction.
            producer.flush(timeout=self.settings.delivery_timeout_ms / 1000)
            undelivered = [future for future in sent if not future.succeeded()]
            if undelivered:
                raise _undelivered(undelivered)
            manager, limit_ms = producer._transaction_manager, self.settings.delivery_timeout_ms
            if partition in offsets:
                tp = TopicPartition(self.settings.input_topic, partition)
                offset = OffsetAndMetadata(offsets[partition], "", -1)
                bounded(producer, manager.send_offsets_to_transaction({tp: offset},
                                                                      self.group_metadata()),
                        limit_ms)  # fmt: skip
            bounded(producer, manager.begin_commit(), limit_ms)
        except KafkaError as exc:
            log.warning("partition %d: transaction failed (%s); aborted", partition, exc)
            self.metrics.transactions_aborted.inc()
            self._drop(partition)
            return False
        self.metrics.transactions_committed.inc()
        return True

    def abort(self) -> None:
        for partition in sorted(self._open):
            self._open.discard(partition)
            self._sent.pop(partition, None)
            producer = self._producers[partition]
            try:
                begin = producer._transaction_manager.begin_abort()
                bounded(producer, begin, self.settings.delivery_timeout_ms)
            except KafkaError as exc:
                log.warning("partition %d: abort failed (%s)", partition, exc)
                self._drop(partition)
            self.metrics.transactions_aborted.inc()

    def _drop(self, partition: int) -> None:
        """Forget ``partition``'s producer; what it still has open is aborted by the broker,
        at the latest when the partition's next owner fences it."""
        producer = self._producers.pop(partition, None)
        self._open.discard(partition)
        self._sent.pop(partition, None)
        if producer is not None:
            with contextlib.suppress(KafkaError):
                close_producer(producer, timeout=0.0)

    def close(self) -> None:
        self.abort()
        for partition in list(self._producers):
            self._drop(partition)


def _undelivered(futures: list[Any]) -> KafkaError:
    first = futures[0]
    reason = str(first.exception) if first.is_done else "not acknowledged in time"
    return KafkaError(f"{len(futures)} records not delivered: {reason}")


def bounded(producer: Any, result: Any, limit_ms: int) -> None:
    """Wait at most ``limit_ms`` for a transactional request of ``producer`` (KafkaTimeoutError
    after). kafka-python 3.0.12's ``send_offsets_to_transaction`` and ``commit_transaction``
    start the request and wait for it without a limit, and on Tansu an EndTxn can go
    unanswered for good: so they are done here from their two halves, with a limit."""
    producer._sender.wakeup()
    if not result.wait(timeout_ms=limit_ms):
        raise KafkaTimeoutError(f"transactional request not answered in {limit_ms} ms")
