"""Kafka transport: ticks from a topic, forecasts and dead letters to topics, at least once.

Input messages are JSON ticks keyed by series, so a series always lives on one
partition. Each forecast goes to ``output_topic`` keyed by its series; each rejected
message goes to ``dlq_topic`` as received (same key, headers and bytes, bounded: see
``dead_letter_message``) with these headers added, UTF-8 text:

    forecaster.reason            the rule it broke (a RejectReason value)
    forecaster.detail            what exactly was wrong
    forecaster.source.topic      where it was read from
    forecaster.source.partition
    forecaster.source.offset
    forecaster.size              the original value's size in bytes
    forecaster.truncated         "value" if only its first max_message_bytes bytes are kept

Delivery is at least once: a polled batch is stepped, its forecasts and dead letters
are sent, the producer's acknowledgement of every record is awaited, and only then
are the batch's offsets (last offset + 1 per partition) committed. If any record is
not acknowledged for a transient reason (broker down, timeout) the sink raises
DeliveryError, nothing is committed, the pipeline rolls the engine back to before the
batch, and the next poll rewinds to the batch's first offsets: the batch is stepped
again, with the same results. A record the client or broker refuses for good (too
large, invalid, not authorised; for dead letters also an unknown topic or a topic that
cannot take records) is counted in ``forecaster_kafka_produce_errors_total{kind=
"permanent"}`` and not retried: it must not hold the input back forever.

Input messages must be keyed by their series id (``require_series_key``): a tick whose
key is missing or differs is a dead letter (key_mismatch). A dead letter keeps the
original key, headers and at most ``max_message_bytes`` of the value (see
``dead_letter_message``), so it always fits in one produce request.

Series state belongs to partitions. When the group takes partitions away, the
rebalance listener detaches their state from the engine into a PartitionStateStore,
noting the offset that state has reached; when a partition is assigned, its stored
state is put back only if that offset is still the partition's committed offset (no
other instance moved it on since). Otherwise the partition's checkpoint (a directory or
the Kafka changelog, ``forecaster.checkpoint``) is restored and consumption resumes at
its offset; without checkpoints the series start afresh from the committed offset: an
instance never steps a series with stale state. Restoring a checkpoint runs in a
background thread while the partition's records are held back (dropped, then fetched
again from the checkpoint's offset): the other partitions keep flowing, and
``restoring()`` (readiness, ``forecaster_state_restoring_partitions``) shows it. kafka-python
calls the listener only from inside ``poll()`` (the caller blocks while the listener
runs on the client's IO thread), so between two polls the engine is never mid-rebalance.

While no broker is reachable, the source reports ``connected() == False`` and polls
return empty batches; it keeps reconnecting with backoff, and a batch in flight is
retried, never committed, until its records are acknowledged.

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
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn, Protocol

import numpy as np
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import (
    InvalidRecordError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from kafka.structs import OffsetAndMetadata

from forecaster.backoff import Backoff
from forecaster.checkpoint import Checkpoint, Checkpoints
from forecaster.config import Settings
from forecaster.engine import Engine, ForecastBatch, PartitionState
from forecaster.errors import DeliveryError, ForecasterError
from forecaster.io.base import DeadLetter, SourceBatch
from forecaster.io.records import encode_forecasts, kept_bytes
from forecaster.metrics import Metrics
from forecaster.ticks import (
    DEFAULT_LIMITS,
    InputLimits,
    ParsedBatch,
    Rejected,
    RejectReason,
    parse_messages,
)

log = logging.getLogger(__name__)

CLIENT_ID = "forecaster"
CONNECT_TIMEOUT_MS = 5000  # one attempt to reach a broker (kafka-python's bootstrap)
CLOSE_TIMEOUT_S = 5.0
RESTORE_RETRY_S = 1.0  # wait before reading a checkpoint store again that could not be read
RESTORE_THREADS = 2
HEADER_PREFIX = "forecaster."
SOURCE = ("topic", "partition", "offset")  # origin fields of a record, also dead-letter headers

ConsumerRecord = Any  # kafka-python's namedtuple: topic, partition, offset, key, value, ...


# --- client configuration -------------------------------------------------------------------


def client_configs(settings: Settings) -> dict[str, Any]:
    """What consumer and producer share: brokers, security, timeouts."""
    configs: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in settings.bootstrap_servers.split(",")],
        "client_id": CLIENT_ID,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
        "reconnect_backoff_max_ms": settings.reconnect_backoff_max_ms,
        # kafka-python's 5 minutes: a leader that was assigned a topic while its partitions
        # were still being created stays idle with none until the next refresh.
        "metadata_max_age_ms": settings.metadata_max_age_ms,
        "bootstrap_timeout_ms": CONNECT_TIMEOUT_MS,
    }
    optional = {
        "sasl_mechanism": settings.sasl_mechanism,
        "sasl_plain_username": settings.sasl_username,
        "sasl_plain_password": settings.sasl_password,
        "ssl_cafile": settings.ssl_cafile,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
    }
    configs.update({name: value for name, value in optional.items() if value})
    return configs


def consumer_configs(settings: Settings) -> dict[str, Any]:
    """A group member that commits explicitly and, with no committed offset, starts at the
    beginning (a new group or a lost offset never skips a tick)."""
    return client_configs(settings) | {
        "group_id": settings.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": settings.poll_max_records,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "max_poll_interval_ms": settings.max_poll_interval_ms,
    }


def producer_configs(settings: Settings) -> dict[str, Any]:
    """Every record acknowledged by all in-sync replicas, batched for a few milliseconds."""
    return client_configs(settings) | {
        "acks": "all",
        "enable_idempotence": settings.enable_idempotence,
        "linger_ms": settings.linger_ms,
        "batch_size": settings.producer_batch_bytes,
        "delivery_timeout_ms": settings.delivery_timeout_ms,
        "max_block_ms": settings.request_timeout_ms,
    }


def construct(client_class: Any, configs: Mapping[str, Any]) -> tuple[Any, Any]:
    """A KafkaConsumer or KafkaProducer, and its network client.

    Construction blocks until a broker answered (at most ``bootstrap_timeout_ms``) and
    raises KafkaError if none did. kafka-python 3 starts the network client's IO thread
    before that and does not stop it when the constructor fails, so the client is
    built here and closed on failure: retrying a broker that is down leaks nothing.
    """
    default_client = client_class.DEFAULT_CONFIG["kafka_client"]
    made: list[Any] = []

    def make_client(**kwargs: Any) -> Any:
        made.append(default_client(**kwargs))
        return made[-1]

    try:
        return client_class(**configs, kafka_client=make_client), made[0]
    except KafkaError:
        for net_client in made:
            net_client.close()
        raise


def connect_consumer(
    configs: Mapping[str, Any], topic: str, listener: ConsumerRebalanceListener
) -> tuple[Any, Any]:
    consumer, net_client = construct(KafkaConsumer, configs)
    consumer.subscribe([topic], listener=listener)
    # Fetch the topic's metadata before the first join. kafka-python 3.0.12's leader
    # otherwise assigns from metadata it fetched before subscribing, asks for a second
    # rebalance as soon as the topic's partitions arrive, and loses that rebalance's
    # assignment if a poll times out while it is in flight: the member then sits in the
    # group with no partition and no listener call, consuming nothing.
    consumer.topics()
    return consumer, net_client


def connect_producer(configs: Mapping[str, Any]) -> Any:
    return construct(KafkaProducer, configs)[0]


def reaches_a_broker(net_client: Any) -> bool:
    """Whether the client holds an open connection to any broker of the cluster."""
    return any(net_client.connected(broker.node_id) for broker in net_client.cluster.brokers())


# --- partition state hand-off ---------------------------------------------------------------


class PartitionStateStore(Protocol):
    """Where a partition's series state waits between a revoke and the next assignment."""

    def save(self, partition: int, state: PartitionState, offset: int) -> None:
        """Keep ``state``, which has stepped every tick of ``partition`` before ``offset``."""
        ...

    def load(self, partition: int) -> tuple[PartitionState, int] | None:
        """The state saved for ``partition`` and its offset, handed over once; None if none."""
        ...


@dataclass
class InMemoryPartitionStateStore:
    """Hand-off within one process: a partition revoked and assigned back keeps its state."""

    saved: dict[int, tuple[PartitionState, int]] = field(default_factory=dict)

    def save(self, partition: int, state: PartitionState, offset: int) -> None:
        self.saved[partition] = (state, offset)

    def load(self, partition: int) -> tuple[PartitionState, int] | None:
        return self.saved.pop(partition, None)


def restorable(
    saved: tuple[PartitionState, int] | None, committed: int | None
) -> PartitionState | None:
    """The saved state, if it has stepped exactly the ticks before the committed offset.

    Any other committed offset means someone else processed the partition since (or our
    last commit failed): that state is stale and must not step another tick.
    """
    if saved is None or committed is None:
        return None
    state, offset = saved
    return state if offset == committed else None


class PartitionHandoff(ConsumerRebalanceListener):  # type: ignore[misc]
    """Moves series state between the engine and a store as the group moves partitions.

    ``stepped[tp]`` is the offset the engine's state of ``tp`` has reached: every tick
    before it has been stepped. kafka-python calls ``on_partitions_lost`` (forced
    eviction) as ``on_partitions_revoked``; the store rule then decides at assignment.
    With ``checkpoints``, a revoked partition's state is also checkpointed, and a
    partition the store cannot restore is restored from its checkpoint (see ``restore``).
    """

    def __init__(
        self,
        engine: Engine,
        store: PartitionStateStore,
        checkpoints: Checkpoints | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.checkpoints = checkpoints
        self.metrics = metrics or Metrics()
        self.stepped: dict[TopicPartition, int] = {}
        self.rebalancing_since: float | None = None  # a revoke no assignment has followed yet
        self._unrestored: set[TopicPartition] = set()
        self._restoring: dict[TopicPartition, Restore] = {}
        self._loader: ThreadPoolExecutor | None = None

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing_since = time.monotonic()
        for tp in revoked:
            self._unrestored.discard(tp)
            self._restoring.pop(tp, None)  # its load may finish; nobody will use it
            state = self.engine.take_partition(tp.partition)
            offset = self.stepped.pop(tp, None)
            if offset is not None and self.checkpoints is not None:
                self.checkpoints.save(state, offset)
            if offset is not None and state.snapshot.series:
                self.store.save(tp.partition, state, offset)
            log.info("partition %d revoked at offset %s", tp.partition, offset)

    def checkpoint(self, assigned: set[TopicPartition]) -> None:
        """Write the state of every assigned partition whose offset is known."""
        if self.checkpoints is None:
            return
        for tp in sorted(assigned):
            if (offset := self.stepped.get(tp)) is not None:
                self.checkpoints.save(self.engine.snapshot_partition(tp.partition), offset)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Restoring needs the committed offsets, a blocking call the listener may not
        make on kafka-python's IO thread: ``restore`` does it right after the poll."""
        self.rebalancing_since = None
        self._unrestored.update(assigned)
        log.info("partitions assigned: %s", sorted(tp.partition for tp in assigned))

    def restore(self, consumer: Any) -> set[TopicPartition]:
        """Put back the state of each newly assigned partition; returns the partitions whose
        records of this poll must be dropped (restoring, or repositioned by a restore).

        The store's state is put back if it is still valid at the committed offset. Else,
        with checkpoints, the partition's records are held back while its checkpoint loads
        in the background; a later call puts it back and resumes consumption at its
        offset, or, with none usable, from the partition's first offset to rebuild the
        state. Without checkpoints, its series start afresh at the committed offset.
        """
        for tp in sorted(self._unrestored):
            offset = _committed_offset(consumer, tp)
            saved = self.store.load(tp.partition)
            state = restorable(saved, offset)
            if state is not None:
                self.engine.put_partition(state)
                log.info("partition %d assigned: state of %d series restored at offset %d",
                         tp.partition, len(state.snapshot.series), offset)  # fmt: skip
            elif self.checkpoints is not None:
                # Its records are dropped until the load is done, not held by
                # consumer.pause(): in one kill -9 test run with kafka-python 3.0.12, a
                # partition paused at its assignment and resumed a poll later was never
                # fetched again.
                self._restoring[tp] = Restore(self._load(tp.partition), time.monotonic())
                continue
            elif saved is not None:
                log.warning("partition %d assigned: its state at offset %d is stale (committed %s);"
                            " its series start afresh", tp.partition, saved[1], offset)  # fmt: skip
            if offset is not None:
                self.stepped[tp] = offset
        self._unrestored.clear()
        held = self._finish_restores(consumer) | set(self._restoring)
        self.metrics.restoring_partitions.set(len(self._restoring))
        return held

    def restoring(self) -> int:
        """How many assigned partitions wait for their checkpoint."""
        return len(self._restoring)

    def _load(self, partition: int, delay_s: float = 0.0) -> Future[Checkpoint | None]:
        if self._loader is None:
            self._loader = ThreadPoolExecutor(RESTORE_THREADS, thread_name_prefix="restore")
        checkpoints = self.checkpoints
        assert checkpoints is not None

        def load() -> Checkpoint | None:
            time.sleep(delay_s)
            return checkpoints.load(partition)

        return self._loader.submit(load)

    def _finish_restores(self, consumer: Any) -> set[TopicPartition]:
        """Put back every checkpoint that finished loading; returns their partitions."""
        finished = {tp for tp, restore in self._restoring.items() if restore.loading.done()}
        for tp in sorted(finished):
            restore = self._restoring.pop(tp)
            try:
                checkpoint = restore.loading.result()
            except ForecasterError as exc:
                log.warning("partition %d: %s; trying again in %.0f s", tp.partition, exc,
                            RESTORE_RETRY_S)  # fmt: skip
                self._restoring[tp] = Restore(self._load(tp.partition, RESTORE_RETRY_S),
                                              restore.started)  # fmt: skip
                continue
            self._resume(consumer, tp, checkpoint)
            self.metrics.restore_seconds.observe(time.monotonic() - restore.started)
        return finished

    def _resume(self, consumer: Any, tp: TopicPartition, checkpoint: Checkpoint | None) -> None:
        """Put back ``checkpoint`` and consume ``tp`` from its offset, else from the
        partition's first offset (the fetcher looks it up)."""
        if checkpoint is None:
            log.warning("partition %d assigned: no usable checkpoint; rebuilding its state "
                        "from its first offset", tp.partition)  # fmt: skip
            consumer.seek_to_beginning(tp)
            self.stepped.pop(tp, None)
        else:
            self.engine.put_partition(checkpoint.state)
            series = len(checkpoint.state.snapshot.series)
            log.info("partition %d assigned: checkpoint of %d series restored at offset %d",
                     tp.partition, series, checkpoint.offset)  # fmt: skip
            consumer.seek(tp, checkpoint.offset)
            self.stepped[tp] = checkpoint.offset

    def close(self) -> None:
        """Stop waiting for checkpoint loads (a load in flight finishes, unused) and close
        the checkpoint store."""
        self._restoring.clear()
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._loader = None
        if self.checkpoints is not None:
            self.checkpoints.close()


@dataclass(frozen=True)
class Restore:
    """A partition's checkpoint being loaded in the background since ``started``."""

    loading: Future[Checkpoint | None]
    started: float


# --- source ---------------------------------------------------------------------------------


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

    def next_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after the batch's last record: what a commit records."""
        return {tp: int(records[-1].offset) + 1 for tp, records in self.by_partition.items()}


def _reject_key_mismatches(parsed: ParsedBatch, records: list[ConsumerRecord]) -> None:
    """Move every tick whose record key is not its series id (UTF-8) to the rejects."""
    ticks = parsed.ticks
    keys = [records[position].key for position in ticks.position.tolist()]
    pairs = zip(keys, ticks.series, strict=True)
    matches = np.fromiter(
        (key is not None and bytes(key) == series.encode() for key, series in pairs),
        bool,
        len(keys),
    )
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


class KafkaSource:
    """A consumer group member polling ``input_topic``; see the module docstring.

    ``connect`` builds the subscribed consumer and its network client (tests pass fakes).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        metrics: Metrics,
        store: PartitionStateStore | None = None,
        connect: ConsumerFactory | None = None,
        *,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        self.metrics = metrics
        self.handoff = PartitionHandoff(
            engine, store or InMemoryPartitionStateStore(), checkpoints, metrics
        )
        self._checkpoint_interval = settings.checkpoint_interval_s
        # The longest a rebalance may take: the group waits up to the rebalance timeout
        # (max_poll_interval_ms) for members to rejoin, a session timeout for a dead one.
        self._rebalance_limit_s = (
            settings.max_poll_interval_ms + settings.session_timeout_ms
        ) / 1000
        self._last_checkpoint = time.monotonic()
        self._limits = settings.input_limits()
        self._require_key = settings.require_series_key
        self._commit_timeout_ms = settings.request_timeout_ms
        self._connect = connect or partial(
            connect_consumer, consumer_configs(settings), settings.input_topic
        )
        self._consumer: Any = None
        self._net_client: Any = None
        self._backoff = Backoff(longest=settings.reconnect_backoff_max_ms / 1000)
        self._undelivered: KafkaBatch | None = None
        self._acknowledged: dict[TopicPartition, int] = {}
        self._lag_labels: set[str] = set()

    def poll(self, timeout: float) -> KafkaBatch:
        consumer = self._connected_consumer()
        if consumer is None:
            time.sleep(timeout)
            return KafkaBatch({})
        self._rewind_undelivered(consumer)
        try:
            polled = consumer.poll(timeout_ms=int(timeout * 1000))
            repositioned = self.handoff.restore(consumer)
            assigned = consumer.assignment()
        except KafkaError as exc:
            log.warning("Kafka poll failed: %s", exc)
            return KafkaBatch({})
        if self._rebalance_stalled():
            self._rejoin()
            return KafkaBatch({})
        # kafka-python already drops records of partitions revoked during the poll; those
        # of a partition being restored, or just restored, precede its checkpoint's offset.
        current = assigned - repositioned
        batch = KafkaBatch(
            {tp: records for tp, records in polled.items() if tp in current},
            self._limits,
            self._require_key,
        )
        self._undelivered = batch if batch.records else None
        self._report_lag(consumer, batch, assigned)
        return batch

    def _connected_consumer(self) -> Any:
        if self._consumer is None and self._backoff.due():
            try:
                self._consumer, self._net_client = self._connect(self.handoff)
                self._backoff.succeeded()
                log.info("connected to Kafka")
            except KafkaError as exc:
                log.warning("Kafka not reachable (%s); next attempt in %.1f s", exc,
                            self._backoff.failed())  # fmt: skip
        return self._consumer

    def _rebalance_stalled(self) -> bool:
        since = self.handoff.rebalancing_since
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
        self.handoff.rebalancing_since = None  # the close revoked too; the next join starts

    def _rewind_undelivered(self, consumer: Any) -> None:
        """The last batch was not committed (its delivery failed, and the pipeline rolled
        the engine back to before it): poll it again."""
        batch, self._undelivered = self._undelivered, None
        if batch is None:
            return
        assigned = consumer.assignment()
        for tp, offset in batch.first_offsets().items():
            if tp not in assigned:  # revoked since: its new owner starts from the commit
                continue
            log.info("partition %d: polling again from offset %d (batch not delivered)",
                     tp.partition, offset)  # fmt: skip
            consumer.seek(tp, offset)

    def _report_lag(self, consumer: Any, batch: KafkaBatch, assigned: set[TopicPartition]) -> None:
        gauge = self.metrics.kafka_consumer_lag
        for label in self._lag_labels - {str(tp.partition) for tp in assigned}:
            gauge.remove(label)
            self._lag_labels.discard(label)
        for tp, offset in batch.next_offsets().items():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                gauge.labels(str(tp.partition)).set(highwater - offset)
                self._lag_labels.add(str(tp.partition))

    def commit(self, batch: KafkaBatch) -> None:
        """Commit the batch's offsets, and any earlier ones whose commit failed.

        A failed commit is logged and retried with the next batch: the worst it can do
        is let a restart repeat forecasts, never skip a tick.
        """
        self._undelivered = None
        self.handoff.stepped.update(batch.next_offsets())
        self._commit_stepped()
        if time.monotonic() - self._last_checkpoint >= self._checkpoint_interval:
            self._last_checkpoint = time.monotonic()
            if self._consumer is not None:
                self.handoff.checkpoint(self._consumer.assignment())

    def _commit_stepped(self) -> None:
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        due = {
            tp: offset
            for tp, offset in self.handoff.stepped.items()
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

    def restoring(self) -> int:
        return self.handoff.restoring()

    def close(self) -> None:
        """Commit what is due, then leave the group (its listener hands off every partition)."""
        if self._consumer is not None:
            self._commit_stepped()
            self._consumer.close(autocommit=False, timeout_ms=int(CLOSE_TIMEOUT_S * 1000))
            self._consumer = self._net_client = None
        self.handoff.close()


def _committed_offset(consumer: Any, tp: TopicPartition) -> int | None:
    """The group's committed offset of ``tp``; None if there is none or it cannot be read."""
    try:
        offset = consumer.committed(tp)
    except KafkaError as exc:
        log.warning("cannot read the committed offset of partition %d: %s", tp.partition, exc)
        return None
    return None if offset is None else int(offset)


# --- sink -----------------------------------------------------------------------------------

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
        *((f"{HEADER_PREFIX}source.{name}", str(origin[name]).encode()) for name in SOURCE),
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


@dataclass(frozen=True)
class Sent:
    future: Any  # kafka-python's FutureRecordMetadata
    dead_letter: bool


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
        self._connect = connect or partial(connect_producer, producer_configs(settings))
        self._producer: Any = None
        self._in_flight: list[Sent] = []
        self._refusals_logged: set[tuple[str, str]] = set()

    def write(self, forecasts: ForecastBatch, dead_letters: list[DeadLetter]) -> None:
        """Send a batch. Everything is encoded before the first send, so an encoding error
        leaves nothing half sent."""
        values = encode_forecasts(forecasts)
        letters = [dead_letter_message(letter, self.keep_bytes) for letter in dead_letters]
        producer = self._connected_producer(len(values) + len(letters))
        for series, value in zip(forecasts.ticks.series, values, strict=True):
            self._send(producer, self.output_topic, (series.encode(), value, []))
        for message in letters:
            self._send(producer, self.dlq_topic, message)

    def _connected_producer(self, total: int) -> Any:
        if self._producer is None:
            try:
                self._producer = self._connect()
            except KafkaError as exc:
                self._fail(total, str(exc))
        return self._producer

    def _send(self, producer: Any, topic: str, message: Message) -> None:
        key, value, headers = message
        dead_letter = topic == self.dlq_topic
        try:
            future = producer.send(topic, value=value, key=key, headers=headers)
        except Exception as exc:  # the client refused the record before sending it
            if not is_permanent(exc, dead_letter):
                self._fail(len(self._in_flight) + 1, f"{type(exc).__name__}: {exc}")
            self._refused(topic, exc)
            return
        self._in_flight.append(Sent(future, dead_letter))

    def flush(self) -> None:
        if not self._in_flight:
            return
        with contextlib.suppress(KafkaError):  # a timeout: what is still in flight failed
            self._producer.flush(timeout=self.timeout_s)
        transient: list[Sent] = []
        for sent in self._in_flight:
            future = sent.future
            if future.succeeded():
                continue
            if future.is_done and is_permanent(future.exception, sent.dead_letter):
                self._refused(self.dlq_topic if sent.dead_letter else self.output_topic,
                              future.exception)  # fmt: skip
            else:
                transient.append(sent)
        if transient:
            self._fail(len(self._in_flight), _failure_reason(transient[0].future))
        self._in_flight = []

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
        delivered = sum(1 for sent in self._in_flight if sent.future.succeeded())
        self.metrics.kafka_produce_errors.labels("transient").inc(total - delivered)
        self._in_flight = []
        self._close_producer(timeout=0.0)
        raise DeliveryError(f"{total - delivered} of {total} records not acknowledged: {reason}")

    def _close_producer(self, timeout: float) -> None:
        producer, self._producer = self._producer, None
        close_producer(producer, timeout)

    def close(self) -> None:
        self._close_producer(timeout=CLOSE_TIMEOUT_S)


def close_producer(producer: Any, timeout: float) -> None:
    """Close ``producer`` (if any), abandoning what it still holds after ``timeout``.

    kafka-python 3.0.12's ``close`` flushes first and raises KafkaTimeoutError when records
    are still in flight at the timeout: exactly the case of a failed delivery.
    """
    if producer is not None:
        with contextlib.suppress(KafkaError):
            producer.close(timeout=timeout)


def _failure_reason(future: Any) -> str:
    return str(future.exception) if future.is_done else "not acknowledged in time"
