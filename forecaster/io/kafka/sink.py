"""The Kafka sink: forecasts to ``output_topic``, dead letters to ``dlq_topic``.

Each rejected message goes to ``dlq_topic`` as received (same key, headers and bytes,
bounded: see ``dead_letter_message``) with these headers added, UTF-8 text:

    forecaster.reason            the rule it broke (a RejectReason value)
    forecaster.detail            what exactly was wrong
    forecaster.source.topic      where it was read from
    forecaster.source.partition
    forecaster.source.offset
    forecaster.size              the original value's size in bytes
    forecaster.truncated         "value" if only its first max_message_bytes bytes are kept

>>> from forecaster.core.ticks import Rejected, RejectReason
>>> raw = b'{"series": "AAPL", "x": "' + b"y" * 90
>>> letter = DeadLetter(Rejected(0, raw, RejectReason.MESSAGE_TOO_LARGE, "too large"),
...                     {"topic": "ticks", "partition": 3, "offset": 41},
...                     key=b"AAPL", headers=(("trace", b"7f"),))
>>> key, value, headers = dead_letter_message(letter, keep_bytes=16)
>>> key, value
(b'AAPL', b'{"series": "AAPL')
>>> for name, value in headers:
...     print(name, value.decode())
trace 7f
forecaster.reason message_too_large
forecaster.detail too large
forecaster.source.topic ticks
forecaster.source.partition 3
forecaster.source.offset 41
forecaster.size 115
forecaster.truncated value
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from itertools import repeat
from typing import Any, NoReturn

from kafka.errors import (
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from forecaster.config import Settings
from forecaster.core.engine import ForecastBatch
from forecaster.errors import DeliveryError
from forecaster.io.base import DeadLetter, OutRecord, Transactions
from forecaster.io.kafka.client import (
    CLOSE_TIMEOUT_S,
    close_producer,
    producer_connector,
)
from forecaster.io.records import encode_forecasts, kept_bytes
from forecaster.ops.metrics import Metrics

log = logging.getLogger(__name__)

HEADER_PREFIX = "forecaster."
KEPT_KEY_BYTES = 1024  # of a dead letter's original key
KEPT_HEADER_BYTES = 65536  # of its original headers, names and values together

Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]  # key, value, headers


def dead_letter_message(letter: DeadLetter, keep_bytes: int) -> Message:
    """Key, value and headers of a dead letter: the original's, bounded so that it always
    fits in one produce request, then why it was rejected and where it was read.

    The value keeps at most ``keep_bytes`` bytes (forecaster.size says how many there
    were), the key at most KEPT_KEY_BYTES, the original headers at most KEPT_HEADER_BYTES
    (forecaster.headers_dropped counts the rest). The forecaster.* headers come last, so
    a consumer reading the headers as a mapping gets ours.
    """
    rejected, origin = letter.rejected, letter.origin
    value = kept_bytes(rejected.raw, keep_bytes)
    key = letter.key if letter.key is not None else _origin_key(origin)
    ours = [
        (HEADER_PREFIX + "reason", rejected.reason.value.encode()),
        (HEADER_PREFIX + "detail", rejected.detail.encode("utf-8", "backslashreplace")),
        *(
            (f"{HEADER_PREFIX}source.{name}", str(value).encode("utf-8", "backslashreplace"))
            for name, value in origin.items()
            if name != "key" and value is not None
        ),
        (HEADER_PREFIX + "size", str(len(rejected.raw)).encode()),
    ]
    if len(value) < len(rejected.raw):
        ours.append((HEADER_PREFIX + "truncated", b"value"))
    if key is not None and len(key) > KEPT_KEY_BYTES:
        key = key[:KEPT_KEY_BYTES]
        ours.append((HEADER_PREFIX + "key_truncated", b"true"))
    kept, dropped = _bounded_headers(letter.headers)
    if dropped:
        ours.append((HEADER_PREFIX + "headers_dropped", str(dropped).encode()))
    return key, value, kept + ours


def _origin_key(origin: dict[str, Any]) -> bytes | None:
    key = origin.get("key")
    return None if key is None else str(key).encode("utf-8", "backslashreplace")


def _bounded_headers(
    headers: tuple[tuple[str, bytes], ...],
) -> tuple[list[tuple[str, bytes]], int]:
    """The first headers that fit in KEPT_HEADER_BYTES, and how many did not."""
    kept: list[tuple[str, bytes]] = []
    room = KEPT_HEADER_BYTES
    for name, value in headers:
        size = len(name.encode("utf-8", "backslashreplace")) + len(value)
        if size > room:
            break
        kept.append((name, value))
        room -= size
    return kept, len(headers) - len(kept)


# Errors that refuse one record for what it is or where it goes: sending it again cannot
# succeed. Other non-retriable errors (a producer that lost its id to a broker that lost its
# state: "Unexpected error in InitProducerIdResponse") concern the producer, not the record,
# and a new producer sends the batch fine.
PERMANENT_RECORD_ERRORS: tuple[type[KafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    InvalidTopicError,
    TopicAuthorizationFailedError,
)


def is_permanent(error: BaseException, dead_letter: bool) -> bool:
    """Whether retrying a record that failed with ``error`` cannot succeed.

    A dead letter is also given up on for an unknown topic, and for any error that is no
    Kafka error (kafka-python raises IndexError for a topic with no partitions): a broken
    dead-letter topic must never hold valid ticks back. For a forecast those stay
    transient: the batch is retried with backoff and /readyz says why.
    """
    if isinstance(error, PERMANENT_RECORD_ERRORS):
        return True
    if isinstance(error, KafkaError):
        return dead_letter and isinstance(error, UnknownTopicOrPartitionError)
    return dead_letter


class KafkaSink:
    """Forecasts to ``output_topic``, dead letters to ``dlq_topic``; ``flush`` awaits the acks.

    A record refused for good (``is_permanent``) is counted as ``kind="permanent"`` and
    dropped. Any other failure counts the records not acknowledged as ``kind="transient"``,
    raises DeliveryError and replaces the producer: kafka-python's idempotent producer
    can be left unusable by a broker that lost its state, and a new one gets a new
    producer id. ``connect`` builds the producer (tests pass fakes).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        connect: Callable[[], Any] | None = None,
    ) -> None:
        self.output_topic = settings.output_topic
        self.dlq_topic = settings.dlq_topic
        self.timeout_s = settings.delivery_timeout_ms / 1000
        self.keep_bytes = settings.max_message_bytes
        self.metrics = metrics
        self._connect = connect or producer_connector(settings)
        self._producer: Any = None
        # By topic, the futures of what was sent since the last flush, in groups: a list of
        # kafka-python's futures, or a batch the producer queued in one call (``_send_batch``).
        self._in_flight: dict[str, list[Collection[Any]]] = {}
        self._refusals_logged: set[tuple[str, str]] = set()

    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None:
        """Send a batch. Everything is encoded before the first send, so an encoding error
        leaves nothing half sent."""
        values = encode_forecasts(forecasts)
        letters = [dead_letter_message(letter, self.keep_bytes) for letter in dead_letters]
        producer = self._connected_producer(len(values) + len(letters))
        keys = list(map(str.encode, forecasts.ticks.series))
        self._send_batch(producer, self.output_topic, keys, values)
        self._send(producer, self.dlq_topic, letters)

    def _connected_producer(self, total: int) -> Any:
        if self._producer is None:
            try:
                self._producer = self._connect()
            except KafkaError as exc:
                self._fail(total, str(exc))
        return self._producer

    def _send_batch(
        self, producer: Any, topic: str, keys: list[bytes], values: list[bytes]
    ) -> None:
        """Send records without headers: those a producer queues in one call
        (``ConfluentProducer.send_batch``: it reads as their futures), the others (all, on
        kafka-python) one by one."""
        send_batch = getattr(producer, "send_batch", None)
        rest = 0
        if send_batch is not None:
            queued = send_batch(topic, keys, values)
            self._in_flight.setdefault(topic, []).append(queued)
            rest = len(queued)
        self._send(producer, topic, zip(keys[rest:], values[rest:], repeat([])))

    def _send(self, producer: Any, topic: str, messages: Iterable[Message]) -> None:
        sent: list[Any] = []
        self._in_flight.setdefault(topic, []).append(sent)
        dead_letters = topic == self.dlq_topic
        for key, value, headers in messages:
            try:
                sent.append(producer.send(topic, value=value, key=key, headers=headers))
            except Exception as exc:  # the client refused the record before sending it
                if not is_permanent(exc, dead_letters):
                    self._fail(self._sent() + 1, f"{type(exc).__name__}: {exc}")
                self._refused(topic, exc)

    def _sent(self) -> int:
        return sum(len(group) for groups in self._in_flight.values() for group in groups)

    def _futures(self) -> Iterator[tuple[str, Any]]:
        """Each record in flight: its topic and its future."""
        for topic, groups in self._in_flight.items():
            for group in groups:
                for future in group:
                    yield topic, future

    def flush(self) -> None:
        if not self._sent():
            return
        with contextlib.suppress(KafkaError):  # a timeout: what is still in flight failed
            self._producer.flush(timeout=self.timeout_s)
        transient = [
            future
            for topic, future in self._futures()
            if not future.succeeded() and not self._refused_for_good(topic, future)
        ]
        if transient:
            self._fail(self._sent(), _failure_reason(transient[0]))
        self._in_flight = {}

    def _refused_for_good(self, topic: str, future: Any) -> bool:
        """Whether a record that failed did so for good (then it is counted as refused)."""
        if not (future.is_done and is_permanent(future.exception, topic == self.dlq_topic)):
            return False
        self._refused(topic, future.exception)
        return True

    def _refused(self, topic: str, error: BaseException) -> None:
        """Count a record refused for good; log the first of each kind per topic."""
        self.metrics.kafka_produce_errors.labels("permanent").inc()
        kind = (topic, type(error).__name__)
        if kind not in self._refusals_logged:
            self._refusals_logged.add(kind)
            log.error("topic %s refused a record for good (%s: %s); such records are counted "
                      "in forecaster_kafka_produce_errors_total{kind=\"permanent\"} and dropped",
                      topic, type(error).__name__, error)  # fmt: skip

    def _fail(self, total: int, reason: str) -> NoReturn:
        delivered = sum(1 for _, future in self._futures() if future.succeeded())
        self.metrics.kafka_produce_errors.labels("transient").inc(total - delivered)
        self._in_flight = {}
        self._close_producer(timeout=0.0)
        raise DeliveryError(f"{total - delivered} of {total} records not acknowledged: {reason}")

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        close_producer(producer, timeout)

    def close(self) -> None:
        self._close_producer(timeout=CLOSE_TIMEOUT_S)


def _failure_reason(future: Any) -> str:
    return str(future.exception) if future.is_done else "not acknowledged in time"


class TransactionalSink:
    """Exactly once: forecasts and dead letters go into the open transaction of the input
    partition they come from (``Transactions``); they are delivered when the pipeline
    commits the batch's transactions, with its input offsets, so ``flush`` has nothing to
    wait for. A record the client refuses fails the batch (DeliveryError): it is
    processed again after the transactions were aborted."""

    def __init__(self, settings: Settings, transactions: Transactions) -> None:
        self.output_topic = settings.output_topic
        self.dlq_topic = settings.dlq_topic
        self.keep_bytes = settings.max_message_bytes
        self.transactions = transactions

    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None:
        """Send a batch; everything is encoded before the first send."""
        values = encode_forecasts(forecasts)
        letters = [
            (int(letter.origin["partition"]), dead_letter_message(letter, self.keep_bytes))
            for letter in dead_letters
        ]
        ticks = forecasts.ticks
        try:
            for series, partition, value in zip(ticks.series, ticks.partition.tolist(), values,
                                                strict=True):  # fmt: skip
                self.transactions.send(partition, OutRecord(self.output_topic, series.encode(),
                                                            value, []))  # fmt: skip
            for partition, (key, value, headers) in letters:
                self.transactions.send(partition, OutRecord(self.dlq_topic, key, value, headers))
        except KafkaError as exc:
            raise DeliveryError(f"a record could not join its transaction: {exc}") from exc

    def flush(self) -> None:
        """Nothing: the batch is delivered when its transactions commit."""

    def close(self) -> None:
        """Nothing: the source closes the transactions once its partitions are revoked."""
