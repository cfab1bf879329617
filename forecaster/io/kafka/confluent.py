"""The confluent-kafka (librdkafka) client behind the Kafka source and sink.

``KafkaSource`` and ``KafkaSink`` hold every rule of the transport (what is committed
when, what a delivery failure costs, what a dead letter keeps); they talk to the client
through the few calls kafka-python's consumer and producer offer. ``ConfluentConsumer``
and ``ConfluentProducer`` offer the same calls on librdkafka, so both clients run one
transport and pass one test suite. Errors come out as kafka-python's ``KafkaError``
classes (``kafka_error``), so a refusal is judged permanent or transient alike.

librdkafka calls the rebalance callbacks from inside ``consume``/``poll`` on the caller's
thread, as kafka-python does: between two polls the engine is never mid-rebalance.
``confluent_kafka`` is imported only when this module is (``kafka_client = "confluent"``).

>>> conf = confluent_configs({"bootstrap_servers": ["a:9092", "b:9092"], "acks": "all",
...                          "ssl_cafile": "ca.pem", "bootstrap_timeout_ms": 5000})
>>> conf["bootstrap.servers"], conf["acks"], conf["ssl.ca.location"]
('a:9092,b:9092', 'all', 'ca.pem')
>>> "bootstrap_timeout_ms" in conf or "bootstrap.timeout.ms" in conf  # no such setting
False
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Mapping
from itertools import repeat
from typing import Any, NamedTuple

import confluent_kafka
from confluent_kafka import KafkaException
from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnknownTopicOrPartitionError,
    for_code,
)

log = logging.getLogger(__name__)

# kafka-python's names of the settings ``client.py`` builds, as librdkafka calls them.
# Settings kafka-python has and librdkafka has not (bootstrap_timeout_ms, max_block_ms,
# its own IO client) are left out.
CONFIG_NAMES = {
    "bootstrap_servers": "bootstrap.servers",
    "client_id": "client.id",
    "security_protocol": "security.protocol",
    "request_timeout_ms": "socket.timeout.ms",
    "reconnect_backoff_max_ms": "reconnect.backoff.max.ms",
    "metadata_max_age_ms": "topic.metadata.refresh.interval.ms",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username",
    "sasl_plain_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "group_id": "group.id",
    "enable_auto_commit": "enable.auto.commit",
    "auto_offset_reset": "auto.offset.reset",
    "fetch_max_wait_ms": "fetch.wait.max.ms",
    "session_timeout_ms": "session.timeout.ms",
    "heartbeat_interval_ms": "heartbeat.interval.ms",
    "max_poll_interval_ms": "max.poll.interval.ms",
    "acks": "acks",
    "enable_idempotence": "enable.idempotence",
    "linger_ms": "linger.ms",
    "batch_size": "batch.size",
    "delivery_timeout_ms": "delivery.timeout.ms",
}
PRODUCER_ONLY = {"acks", "enable.idempotence", "linger.ms", "batch.size", "delivery.timeout.ms"}
# Keys land on the partitions kafka-python and the Java client pick (murmur2), not on
# librdkafka's default (CRC32): mixed clients agree where a series lives.
PARTITIONER = "murmur2_random"
STATISTICS_INTERVAL_MS = 1000  # how often the consumer learns which brokers are up
QUEUE_FULL_WAIT_S = 0.05  # a full local queue: serve delivery reports this long, then retry
OFFSET_BEGINNING = confluent_kafka.OFFSET_BEGINNING
ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner picks
Headers = list[tuple[str, str | bytes | None]] | None

# librdkafka's own (negative) error codes that kafka-python names otherwise.
LOCAL_ERRORS: dict[int, type[KafkaError]] = {
    confluent_kafka.KafkaError._MSG_TIMED_OUT: KafkaTimeoutError,
    confluent_kafka.KafkaError._TIMED_OUT: KafkaTimeoutError,
    confluent_kafka.KafkaError._UNKNOWN_TOPIC: UnknownTopicOrPartitionError,
    confluent_kafka.KafkaError._UNKNOWN_PARTITION: UnknownTopicOrPartitionError,
    confluent_kafka.KafkaError._ALL_BROKERS_DOWN: KafkaConnectionError,
}


def confluent_configs(configs: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka's configuration of kafka-python ``configs`` (``client.py``'s)."""
    mapped = {CONFIG_NAMES[name]: value for name, value in configs.items() if name in CONFIG_NAMES}
    servers = mapped.get("bootstrap.servers")
    if isinstance(servers, list):
        mapped["bootstrap.servers"] = ",".join(servers)
    return mapped


def kafka_error(error: confluent_kafka.KafkaError | BaseException | None) -> KafkaError:
    """The kafka-python error of a librdkafka error: broker codes are Kafka's own."""
    if isinstance(error, KafkaException):
        error = error.args[0] if error.args else None
    if not isinstance(error, confluent_kafka.KafkaError):
        return KafkaError(str(error))
    code = error.code()
    kind = for_code(code) if code > 0 else LOCAL_ERRORS.get(code, KafkaError)
    return kind(error.str())


def fatal_error() -> KafkaError:
    """The kafka-python error of what a flush of librdkafka's raised (call it in an
    ``except``). After a fatal error (an idempotent producer whose broker lost its id:
    UNKNOWN_PRODUCER_ID), confluent-kafka 2.16's flush raises what its delivery callbacks
    were left with: a SystemError, or its KafkaError object itself, which is no exception
    class, so that only a bare ``except`` catches it. An interrupt is raised again."""
    raised = sys.exc_info()[1]
    if isinstance(raised, BaseException) and not isinstance(raised, Exception):
        raise raised
    return kafka_error(raised)


def log_error(error: confluent_kafka.KafkaError) -> None:
    """librdkafka's client-wide errors (a broker down, a failed authentication): it retries
    on its own, and its log (LOGGING) says each already."""
    log.debug("Kafka client: %s", error.str())


# librdkafka's own log through the service's logging (served by poll and flush), each
# client-wide error once (error_cb: without it librdkafka prints errors on stderr again).
LOGGING = {"logger": logging.getLogger("librdkafka"), "error_cb": log_error}


class Record(NamedTuple):
    """A consumed message as the source reads kafka-python's records (made by
    ``new_record``: a namedtuple's own constructor runs Python code per message)."""

    topic: str | None
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    headers: Any  # a list of (name, value) pairs, or None


new_record = tuple.__new__


class BrokerStates:
    """Which brokers are up, from librdkafka's statistics; answers ``reaches_a_broker`` as
    kafka-python's network client does (``cluster.brokers()``, ``connected(node_id)``)."""

    class Broker(NamedTuple):
        node_id: str

    def __init__(self) -> None:
        self.cluster = self
        self._up: list[BrokerStates.Broker] = []

    def update(self, statistics: str) -> None:
        brokers = json.loads(statistics).get("brokers", {})
        self._up = [
            BrokerStates.Broker(name)
            for name, broker in brokers.items()
            if broker.get("state") == "UP" and broker.get("source") != "internal"
        ]

    def brokers(self) -> list[BrokerStates.Broker]:
        return self._up

    def connected(self, node_id: str) -> bool:
        return any(broker.node_id == node_id for broker in self._up)


class ConfluentConsumer:
    """A subscribed librdkafka consumer with kafka-python's calls (see the module)."""

    def __init__(self, configs: Mapping[str, Any], topic: str,
                 listener: ConsumerRebalanceListener) -> None:  # fmt: skip
        log.info("Kafka client: confluent-kafka %s (librdkafka %s)", confluent_kafka.version()[0],
                 confluent_kafka.libversion()[0])  # fmt: skip
        self.brokers = BrokerStates()
        self._timeout_s = configs.get("request_timeout_ms", 30000) / 1000
        self._max_records = int(configs.get("max_poll_records", 500))
        conf = {
            key: value
            for key, value in confluent_configs(configs).items()
            if key not in PRODUCER_ONLY
        }
        watch = {"statistics.interval.ms": STATISTICS_INTERVAL_MS, "stats_cb": self.brokers.update}
        self._consumer = confluent_kafka.Consumer(conf | watch | LOGGING)
        self._listener = listener
        self._topic = topic
        self._group = configs.get("group_id")
        self._member_id: str | None = None
        # As the rebalance callbacks left it: librdkafka's assignment() is a round trip to
        # its main thread, which cost the loaded service a tenth of its time at a few
        # calls per batch (py-spy, bench_latency.py).
        self._assignment: set[TopicPartition] = set()
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def _assigned(self, consumer: Any, partitions: list[Any]) -> None:
        if (member_id := self._consumer.memberid()) != self._member_id:
            self._member_id = member_id  # worded as kafka-python logs it: one log for both
            log.info("Received member id %s for group %s", member_id, self._group)
        assigned = _kafka_partitions(partitions)
        self._assignment |= assigned  # the client assigns them once this returns
        self._listener.on_partitions_assigned(assigned)

    def _revoked(self, consumer: Any, partitions: list[Any]) -> None:
        revoked = _kafka_partitions(partitions)
        self._listener.on_partitions_revoked(revoked)  # while still assigned, as on kafka-python
        self._assignment -= revoked

    def _lost(self, consumer: Any, partitions: list[Any]) -> None:
        lost = _kafka_partitions(partitions)
        self._assignment -= lost  # no longer ours: nothing of them is committed
        self._listener.on_partitions_lost(lost)

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        """Records by partition: waits up to ``timeout_ms`` for the first, then takes what
        else is fetched already (``consume`` alone would wait for a whole batch)."""
        try:
            first = self._consumer.poll(timeout_ms / 1000)
            if first is None:
                return {}
            messages = [first, *self._consumer.consume(self._max_records - 1, 0)]
        except KafkaException as exc:
            raise kafka_error(exc) from exc
        polled: dict[int | None, list[Record]] = {}
        for message in messages:
            if (error := message.error()) is not None:
                log.warning("Kafka consumer: %s", error.str())
                continue
            partition = message.partition()
            fields = (self._topic, partition, message.offset(), message.key(), message.value(),
                      message.headers())  # fmt: skip
            record = new_record(Record, fields)
            if (records := polled.get(partition)) is None:
                records = polled[partition] = []
            records.append(record)
        return {TopicPartition(self._topic, p): records for p, records in polled.items()}

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def committed(self, tp: TopicPartition) -> int | None:
        partition = confluent_kafka.TopicPartition(tp.topic, tp.partition)
        try:
            (answer,) = self._consumer.committed([partition], timeout=self._timeout_s)
        except KafkaException as exc:
            raise kafka_error(exc) from exc
        if answer.error is not None:
            raise kafka_error(answer.error)
        return answer.offset if answer.offset >= 0 else None

    def commit(self, offsets: Mapping[TopicPartition, Any], timeout_ms: int | None = None) -> None:
        """Commit ``offsets`` (kafka-python's OffsetAndMetadata) and wait for the answer."""
        partitions = [confluent_kafka.TopicPartition(tp.topic, tp.partition, meta.offset)
                      for tp, meta in offsets.items()]  # fmt: skip
        try:
            answers = self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            raise kafka_error(exc) from exc
        for answer in answers or ():
            if answer.error is not None:
                raise kafka_error(answer.error)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(confluent_kafka.TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise kafka_error(exc) from exc

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.seek(tp, OFFSET_BEGINNING)

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as last fetched (no request), None if not known."""
        partition = confluent_kafka.TopicPartition(tp.topic, tp.partition)
        try:
            _, high = self._consumer.get_watermark_offsets(partition, cached=True)
        except (KafkaException, TypeError):  # TypeError: None, nothing fetched yet
            return None
        return int(high) if high >= 0 else None

    def close(self, autocommit: bool = False, timeout_ms: int | None = None) -> None:
        """Leave the group (the listener hears of every partition revoked); this consumer
        never commits on its own, whatever ``autocommit`` says."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:  # RuntimeError: closed already
            raise kafka_error(exc) from exc


def connect_consumer(
    configs: Mapping[str, Any], topic: str, listener: ConsumerRebalanceListener
) -> tuple[ConfluentConsumer, BrokerStates]:
    """A subscribed consumer and what tells whether it reaches a broker. librdkafka connects
    in the background: a broker that is down makes empty polls, never an error here."""
    consumer = ConfluentConsumer(configs, topic, listener)
    return consumer, consumer.brokers


class Flush:
    """The records sent since the last flush: ``ended`` once each was acknowledged or
    failed (then a record that reported no error was acknowledged)."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended = False


class Delivery:
    """One record's delivery, as the sink reads kafka-python's futures: acknowledged once
    its flush ended with no failure pinned to it (``ConfluentProducer``)."""

    __slots__ = ("exception", "flush")

    def __init__(self, flush: Flush) -> None:
        self.flush = flush
        self.exception: KafkaError | None = None

    @property
    def is_done(self) -> bool:
        return self.flush.ended or self.exception is not None

    def succeeded(self) -> bool:
        return self.flush.ended and self.exception is None


class Batch:
    """The records one ``send_batch`` queued, read as their futures, with no object per
    record (a Delivery per record took ~2.7 µs of wall time per record, timed inside the
    service: benchmarks/README.md): ``len`` of them; iterating yields a failed Delivery for
    each failure pinned to the batch, then one shared Delivery for each other record.

    >>> flush = Flush()
    >>> batch = Batch(flush, 3)
    >>> batch.fail(KafkaTimeoutError("late"))
    >>> flush.ended = True
    >>> len(batch), [delivery.succeeded() for delivery in batch]
    (3, [False, True, True])
    """

    __slots__ = ("_acknowledged", "count", "failed")

    def __init__(self, flush: Flush, count: int) -> None:
        self.count = count
        self.failed: list[Delivery] = []
        self._acknowledged = Delivery(flush)

    def fail(self, error: KafkaError) -> None:
        failed = Delivery(self._acknowledged.flush)
        failed.exception = error
        self.failed.append(failed)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Delivery]:
        yield from self.failed
        yield from repeat(self._acknowledged, self.count - len(self.failed))


class ConfluentProducer:
    """A librdkafka producer with kafka-python's calls (see the module).

    librdkafka reports failed records only (``delivery.report.only.error``), to one
    callback of the producer's: a callback per record costs ~1.3 µs of CPU per record
    even when it is never called (``bench_kafka.py``'s README). The k-th failure reported
    for a topic is pinned to the k-th record sent to it since the last flush: the sink
    judges a topic's records by how many failed and why, never by which one did.
    ``send_batch`` queues many records at once, as one Batch.
    """

    def __init__(self, configs: Mapping[str, Any]) -> None:
        own = {"partitioner": PARTITIONER, "delivery.report.only.error": True,
               "on_delivery": self._failed}  # fmt: skip
        conf = confluent_configs(configs) | LOGGING | own
        if "max_request_size" in configs:
            conf["message.max.bytes"] = configs["max_request_size"]
        self._producer = confluent_kafka.Producer(conf)
        self._flush = Flush()
        self._sent: dict[str, list[Delivery | Batch]] = {}  # since the last flush, by topic
        self._failures: dict[str, int] = {}  # of them, by topic
        self._timeout_s = configs.get("request_timeout_ms", 30000) / 1000
        self._metadata_age_s = configs.get("metadata_max_age_ms", 300000) / 1000
        self._partitionless: dict[str, tuple[bool, float]] = {}  # topic: (none, checked at)

    def send(self, topic: str, value: bytes, key: bytes | None = None,
             headers: Headers = None, partition: int = ANY_PARTITION) -> Delivery:  # fmt: skip
        """Queue a record; its Delivery is done once the broker acknowledged or refused it.
        Raises the KafkaError of a record the client refuses before sending it."""
        if partition == ANY_PARTITION and self._has_no_partitions(topic):
            raise UnknownTopicOrPartitionError(f"topic {topic} has no partitions")
        self._produce_when_room(topic, value, key, partition, headers or None)
        delivery = Delivery(self._flush)
        if (sent := self._sent.get(topic)) is None:
            sent = self._sent[topic] = []
        sent.append(delivery)
        return delivery

    def send_batch(self, topic: str, keys: list[bytes], values: list[bytes]) -> Batch:
        """Queue records without headers, as ``send`` does at a fraction of its cost (one
        partition check, the bound ``produce`` in a loop, no object per record); returns
        the Batch of the records queued, the first ``len`` of them. Stops before the first
        record the client refuses, which the caller sends on with ``send`` (to get its
        error)."""
        batch = Batch(self._flush, len(values))
        if self._has_no_partitions(topic):
            batch.count = 0
            return batch
        if (sent := self._sent.get(topic)) is None:
            sent = self._sent[topic] = []
        sent.append(batch)  # before a full queue's poll may report failures of it
        produce, queued = self._producer.produce, 0
        for key, value in zip(keys, values, strict=True):
            try:
                produce(topic, value, key)
            except BufferError:
                try:
                    self._produce_when_room(topic, value, key)
                except KafkaError:
                    break
            except KafkaException:
                break
            queued += 1
        batch.count = queued
        return batch

    def _produce_when_room(
        self, topic: str, value: bytes, key: bytes | None, partition: int = ANY_PARTITION,
        headers: Headers = None,
    ) -> None:  # fmt: skip
        """Queue a record, serving delivery reports while the local queue is full; raises
        the KafkaError of a record the client refuses."""
        while True:
            try:
                self._producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:  # the local queue is full: let the broker catch up
                self._producer.poll(QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                raise kafka_error(exc) from exc

    def _failed(self, error: confluent_kafka.KafkaError | None, message: Any) -> None:
        """librdkafka's report of a record that failed: pinned to the next record of its
        topic with none yet (see the class)."""
        topic = message.topic()
        failed = self._failures.get(topic, 0)
        before = 0  # records of the topic sent before each entry
        for entry in self._sent.get(topic, []):
            if isinstance(entry, Delivery):
                if before == failed:
                    entry.exception = kafka_error(error)
                    break
                before += 1
            elif failed < before + entry.count:
                entry.fail(kafka_error(error))
                break
            else:
                before += entry.count
        else:
            return
        self._failures[topic] = failed + 1

    def _has_no_partitions(self, topic: str) -> bool:
        """Whether ``topic`` exists with no partition, as metadata said at most
        ``metadata_max_age_ms`` ago. librdkafka would hold its records until they time
        out; kafka-python refuses them at once, which the sink counts on."""
        none, checked = self._partitionless.get(topic, (False, -math.inf))
        if time.monotonic() - checked > self._metadata_age_s:
            try:
                found = self._producer.list_topics(topic, self._timeout_s).topics.get(topic)
            except KafkaException:
                found = None  # not known now: librdkafka's own errors will say
            none = found is not None and found.error is None and not found.partitions
            self._partitionless[topic] = (none, time.monotonic())
        return none

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record is acknowledged or refused; KafkaTimeoutError if some
        are still in flight after ``timeout`` seconds: those are dropped and fail (a
        record not acknowledged in time is one to send again)."""
        try:
            left = self._producer.flush(-1 if timeout is None else timeout)
            if left:
                self._producer.purge()  # what is left fails now, with a report of its own
                self._producer.flush(0)
        except:  # noqa: E722 (see fatal_error)
            raise fatal_error() from None
        self._flush.ended = True
        self._flush, self._sent, self._failures = Flush(), {}, {}
        if left:
            raise KafkaTimeoutError(f"{left} records not acknowledged after {timeout} s")

    def close(self, timeout: float | None = None) -> None:
        """Flush for at most ``timeout`` seconds, then drop what is still queued."""
        try:
            self.flush(timeout)
        finally:
            try:
                self._producer.purge()
                self._producer.flush(0)
            except:  # noqa: E722 (see fatal_error): the producer is dropped anyway
                log.debug("dropping a producer: %s", fatal_error())


def connect_producer(configs: Mapping[str, Any]) -> ConfluentProducer:
    return ConfluentProducer(configs)


def _kafka_partitions(partitions: list[Any]) -> set[TopicPartition]:
    return {TopicPartition(p.topic, p.partition) for p in partitions}
