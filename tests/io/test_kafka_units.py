"""The Kafka transport's pieces that need no broker: batches, sink, source, produce.

Consumer and producer are small fakes with kafka-python's interface; the rebalance
listener is called from inside the fake's ``poll``, as kafka-python does.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
)
from kafka.record import util as record_util

from forecaster.backoff import Backoff
from forecaster.config import Settings
from forecaster.core.engine import Engine, EngineParams, PartitionState
from forecaster.core.ticks import (
    InputLimits,
    Rejected,
    RejectReason,
    parse_csv_frame,
    parse_messages,
)
from forecaster.errors import ConfigError, DeliveryError
from forecaster.io.base import DeadLetter
from forecaster.io.files import CsvSource
from forecaster.io.kafka import (
    KEPT_KEY_BYTES,
    KafkaBatch,
    KafkaSink,
    KafkaSource,
    client_configs,
    consumer_configs,
    dead_letter_message,
    producer_configs,
)
from forecaster.io.produce import tick_messages
from forecaster.ops.metrics import Metrics
from forecaster.pipeline import Pipeline
from forecaster.state.checkpoint import Checkpoint, Checkpoints, CheckpointStore
from forecaster.state.partitions import PartitionStates
from tests.support.paths import SAMPLE_DATA
from tests.support.waiting import wait_for

SAMPLE = SAMPLE_DATA
TOPIC = "ticks"
SETTINGS = Settings(bootstrap_servers="broker:9092", input_topic=TOPIC)


def tp(partition: int) -> Any:
    return TopicPartition(TOPIC, partition)


def record(partition: int, offset: int, value: bytes | None, key: bytes | None = None) -> Any:
    return ConsumerRecord(TOPIC, partition, 0, offset, 0, 0, key, value, [], None, 0, 0, 0)


def tick(partition: int, offset: int, series: str, second: int, price: float = 1.5) -> Any:
    value = json.dumps({"series": series, "ts": second * 1000, "price": price}).encode()
    return record(partition, offset, value, series.encode())


# --- batches ----------------------------------------------------------------------------------


def test_a_batch_tags_ticks_with_their_partition_and_rejects_with_their_coordinates() -> None:
    batch = KafkaBatch(
        {tp(2): [tick(2, 7, "A", 1), record(2, 8, b"{oops", b"A")], tp(5): [tick(5, 3, "B", 1)]}
    )
    parsed = batch.parse()
    assert parsed.ticks.series == ["A", "B"]
    assert parsed.ticks.partition.tolist() == [2, 5]
    assert batch.origin(parsed.rejects[0].position) == {
        "topic": TOPIC, "partition": 2, "offset": 8, "key": "A",
    }  # fmt: skip
    assert batch.first_offsets() == {tp(2): 7, tp(5): 3}
    assert batch.next_offsets() == {2: 9, 5: 4}
    assert batch.without({2}).parse().ticks.series == ["B"]


def test_a_message_without_a_value_is_rejected_not_fatal() -> None:
    parsed = KafkaBatch({tp(0): [record(0, 0, None)]}).parse()
    assert [r.reason for r in parsed.rejects] == [RejectReason.INVALID_JSON]


def test_a_tick_not_keyed_by_its_series_is_a_dead_letter_unless_allowed() -> None:
    records = [
        tick(0, 0, "A", 1),
        record(0, 1, b'{"series": "A", "ts": 2000, "price": 1.5}', b"B"),
        record(0, 2, b'{"series": "A", "ts": 3000, "price": 1.5}', None),
        record(0, 3, b'{"series": "\xc3\xa9", "ts": 3000, "price": 1.5}', "\u00e9".encode()),
    ]
    parsed = KafkaBatch({tp(0): records}, require_key=True).parse()
    assert parsed.ticks.series == ["A", "\u00e9"]
    assert [(r.position, r.reason) for r in parsed.rejects] == [
        (1, RejectReason.KEY_MISMATCH), (2, RejectReason.KEY_MISMATCH),
    ]  # fmt: skip
    assert "b'B'" in parsed.rejects[0].detail and "(none)" in parsed.rejects[1].detail
    assert len(KafkaBatch({tp(0): records}, require_key=False).parse().ticks) == 4


def test_a_dead_letter_keeps_key_headers_size_and_first_bytes_and_always_fits() -> None:
    raw = b'{"series": "A", "pad": "' + b"x" * 1_100_000 + b'"}'
    headers = tuple((f"h{i}", b"v" * 2000) for i in range(100))  # 200 KB of headers
    big_key = b"k" * 5000
    poisoned = record(0, 9, raw, big_key)._replace(headers=list(headers))
    batch = KafkaBatch({tp(0): [poisoned]}, InputLimits(max_message_bytes=16384))
    letter = batch.dead_letter(batch.parse().rejects[0])
    key, value, kept = dead_letter_message(letter, keep_bytes=16384)
    named = dict(kept)
    assert value == raw[:16384] and key == big_key[:KEPT_KEY_BYTES]
    assert named["forecaster.reason"] == b"message_too_large"
    assert named["forecaster.size"] == str(len(raw)).encode()
    assert named["forecaster.truncated"] == b"value" and named["forecaster.key_truncated"]
    assert kept[:2] == list(headers[:2])  # the original headers first, in order
    dropped = int(named["forecaster.headers_dropped"])
    assert 0 < dropped < len(headers) and len(kept) == len(headers) - dropped + 9
    size = len(key) + len(value) + sum(len(name) + len(v) for name, v in kept)
    assert size < 128 * 1024  # far inside the producer's 1 MiB request


# --- the sink ---------------------------------------------------------------------------------


@dataclass
class FakeFuture:
    error: Exception | None = None
    is_done: bool = True

    def succeeded(self) -> bool:
        return self.is_done and self.error is None

    @property
    def exception(self) -> Exception | None:
        return self.error


@dataclass
class FakeProducer:
    """Acknowledges every send, except those whose value is in ``refuse`` (or all of them):
    those fail with ``error``; a send to a topic in ``raise_on`` raises IndexError, as
    kafka-python does for a topic with no partitions."""

    refuse: set[bytes] = field(default_factory=set)
    refuse_all: bool = False
    error: Exception = field(default_factory=NotLeaderForPartitionError)
    raise_on: set[str] = field(default_factory=set)
    sent: list[tuple[str, bytes, bytes | None, list[Any]]] = field(default_factory=list)
    closed: bool = False

    def send(self, topic: str, value: bytes, key: bytes | None, headers: list[Any]) -> FakeFuture:
        if topic in self.raise_on:
            raise IndexError("Cannot choose from an empty sequence")
        self.sent.append((topic, value, key, headers))
        refused = self.refuse_all or value in self.refuse
        return FakeFuture(self.error if refused else None)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        self.closed = True


def forecasts_and_letters() -> tuple[Any, list[DeadLetter]]:
    engine = Engine(EngineParams())
    batch = KafkaBatch({tp(1): [tick(1, 0, "A", 1), tick(1, 1, "B", 1), record(1, 2, b"[]", b"C")]})
    parsed = batch.parse()
    letters = [batch.dead_letter(r) for r in parsed.rejects]
    return engine.process(parsed.ticks).forecasts, letters


def test_forecasts_are_keyed_by_series_and_dead_letters_keep_bytes_key_and_origin() -> None:
    producer = FakeProducer()
    sink = KafkaSink(SETTINGS, Metrics(), connect=lambda: producer)
    sink.write(*forecasts_and_letters())
    sink.flush()
    (t1, v1, k1, _), (_, _, k2, _), (t3, v3, k3, h3) = producer.sent
    assert (t1, k1, k2) == (SETTINGS.output_topic, b"A", b"B")
    assert json.loads(v1)["series"] == "A"
    assert (t3, v3, k3) == (SETTINGS.dlq_topic, b"[]", b"C")
    assert dict(h3)["forecaster.reason"] == b"not_an_object"
    assert dict(h3)["forecaster.source.offset"] == b"2"


def test_an_unacknowledged_record_fails_the_batch_and_replaces_the_producer() -> None:
    forecasts, letters = forecasts_and_letters()
    producers = [FakeProducer(refuse={b"[]"}), FakeProducer()]
    metrics = Metrics()
    sink = KafkaSink(SETTINGS, metrics, connect=lambda: producers.pop(0))
    sink.write(forecasts, letters)
    with pytest.raises(DeliveryError, match="1 of 3 records not acknowledged"):
        sink.flush()
    assert produce_errors(metrics, "transient") == 1
    sink.write(forecasts, letters)  # the batch again, on a fresh producer
    sink.flush()
    assert not producers


def produce_errors(metrics: Metrics, kind: str) -> float | None:
    name = "forecaster_kafka_produce_errors_total"
    value = metrics.registry.get_sample_value(name, {"kind": kind})
    return None if value is None else float(value)


def test_a_dead_letter_refused_for_good_is_counted_and_not_retried() -> None:
    forecasts, letters = forecasts_and_letters()
    producer = FakeProducer(refuse={b"[]"}, error=MessageSizeTooLargeError())
    metrics = Metrics()
    sink = KafkaSink(SETTINGS, metrics, connect=lambda: producer)
    sink.write(forecasts, letters)
    sink.flush()  # no DeliveryError: the batch commits
    assert produce_errors(metrics, "permanent") == 1
    assert produce_errors(metrics, "transient") == 0
    assert not producer.closed


def test_a_producer_that_lost_its_id_fails_the_batch_for_a_new_producer_not_for_good() -> None:
    """kafka-python aborts every batch with a plain, non-retriable KafkaError when a broker
    that lost its state answers InitProducerId with an unknown error; a new producer
    delivers the same records."""
    fatal = KafkaError("Unexpected error in InitProducerIdResponse: [Error -1] UnknownError")
    producers = [FakeProducer(refuse_all=True, error=fatal), FakeProducer()]
    metrics = Metrics()
    sink = KafkaSink(SETTINGS, metrics, connect=lambda: producers.pop(0))
    forecasts, letters = forecasts_and_letters()
    sink.write(forecasts, letters)
    with pytest.raises(DeliveryError, match="InitProducerId"):
        sink.flush()
    assert (produce_errors(metrics, "transient"), produce_errors(metrics, "permanent")) == (3, 0)
    sink.write(forecasts, letters)
    sink.flush()
    assert not producers


def test_a_dead_letter_topic_the_client_cannot_send_to_never_holds_forecasts_back() -> None:
    producer = FakeProducer(raise_on={SETTINGS.dlq_topic})
    metrics = Metrics()
    sink = KafkaSink(SETTINGS, metrics, connect=lambda: producer)
    sink.write(*forecasts_and_letters())
    sink.flush()
    assert [topic for topic, *_ in producer.sent] == [SETTINGS.output_topic] * 2
    assert produce_errors(metrics, "permanent") == 1


def test_a_forecast_topic_the_client_cannot_send_to_fails_the_batch_for_a_retry() -> None:
    metrics = Metrics()
    sink = KafkaSink(
        SETTINGS, metrics, connect=lambda: FakeProducer(raise_on={SETTINGS.output_topic})
    )
    with pytest.raises(DeliveryError, match="IndexError"):
        sink.write(*forecasts_and_letters())
    assert produce_errors(metrics, "transient") == 1


def test_records_still_in_flight_at_the_deadline_fail_the_batch() -> None:
    class StuckProducer(FakeProducer):
        def send(self, *args: Any, **kwargs: Any) -> FakeFuture:
            return FakeFuture(is_done=False)

        def flush(self, timeout: float) -> None:
            raise KafkaTimeoutError("flush")

        def close(self, timeout: float) -> None:
            self.flush(timeout)  # as kafka-python 3.0.12 does: raises with records in flight

    sink = KafkaSink(SETTINGS, Metrics(), connect=StuckProducer)
    sink.write(*forecasts_and_letters())
    with pytest.raises(DeliveryError, match="3 of 3 records not acknowledged: not acknowledged"):
        sink.flush()


def test_a_broker_that_cannot_be_reached_fails_the_batch() -> None:
    def unreachable() -> Any:
        raise KafkaTimeoutError("Unable to bootstrap")

    sink = KafkaSink(SETTINGS, Metrics(), connect=unreachable)
    with pytest.raises(DeliveryError, match="Unable to bootstrap"):
        sink.write(*forecasts_and_letters())


# --- the source -------------------------------------------------------------------------------


Poll = tuple[set[int] | None, dict[int, list[Any]]]  # a new assignment (or None), records


class FakeConsumer:
    """Hands out ``polls`` in turn; a new assignment revokes and assigns through the listener."""

    def __init__(self, polls: Iterable[Poll], listener: Any, committed: dict[int, int]) -> None:
        self.polls = deque(polls)
        self.listener = listener
        self.assigned: set[Any] = set()
        self.committed_offsets = {tp(p): offset for p, offset in committed.items()}
        self.seeks: list[tuple[Any, int]] = []
        self.closed = False

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        assignment, records = self.polls.popleft() if self.polls else (None, {})
        if assignment is not None:
            self.listener.on_partitions_revoked(self.assigned)
            self.assigned = {tp(p) for p in assignment}
            self.listener.on_partitions_assigned(self.assigned)
        return {tp(p): batch for p, batch in records.items()}

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def committed(self, partition: Any) -> int | None:
        return self.committed_offsets.get(partition)

    def commit(self, offsets: dict[Any, Any], timeout_ms: int | None = None) -> None:
        assert timeout_ms is not None, "kafka-python's commit without a timeout can block for good"
        self.committed_offsets.update({p: meta.offset for p, meta in offsets.items()})

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset))

    def seek_to_beginning(self, partition: Any) -> None:
        self.seeks.append((partition, 0))

    def highwater(self, partition: Any) -> int:
        return 100

    def close(self, autocommit: bool, timeout_ms: int) -> None:
        self.listener.on_partitions_revoked(self.assigned)
        self.closed = True


@dataclass
class Fixture:
    engine: Engine
    states: PartitionStates
    source: KafkaSource
    consumers: list[FakeConsumer]  # the one the source connected, once it did
    pipeline: Pipeline

    @property
    def consumer(self) -> FakeConsumer:
        return self.consumers[0]


def kafka_source(
    polls: list[Poll],
    committed: dict[int, int] | None = None,
    settings: Settings = SETTINGS,
    checkpoints: Checkpoints | None = None,
    overlap: str = "off",
) -> Fixture:
    engine = Engine(EngineParams())
    holder: list[FakeConsumer] = []

    def connect(listener: Any) -> tuple[FakeConsumer, None]:
        holder.append(FakeConsumer(polls, listener, committed or {}))
        return holder[-1], None

    metrics = Metrics()
    states = PartitionStates(engine, checkpoints, metrics, settings.checkpoint_interval_s)
    source = KafkaSource(settings, metrics, partitions=states, connect=connect)
    sink = KafkaSink(SETTINGS, metrics, connect=FakeProducer)
    pipeline = Pipeline(source, engine, sink, metrics, states=states, overlap=overlap)
    return Fixture(engine, states, source, holder, pipeline)


def test_a_delivered_batch_commits_its_last_offsets_plus_one() -> None:
    f = kafka_source([({0, 1}, {0: [tick(0, 4, "A", 1)], 1: [tick(1, 9, "B", 1)]})])
    f.pipeline.step()
    assert f.consumer.committed_offsets == {tp(0): 5, tp(1): 10}
    assert f.source.metrics.registry.get_sample_value(
        "forecaster_kafka_consumer_lag_messages", {"partition": "0"}
    ) == 95  # fmt: skip


def test_an_undelivered_batch_is_polled_again_from_the_state_before_it() -> None:
    ticks = [tick(0, i, "A", i + 1, price=1.0 + 0.01 * i) for i in range(3)]
    f = kafka_source([({0}, {0: ticks[:2]}), (None, {0: ticks[2:]}), (None, {0: ticks[2:]})])
    f.pipeline.step()  # offsets 0-1 done and committed
    before = f.engine.snapshot_partition(0).snapshot
    f.pipeline.sink = KafkaSink(SETTINGS, Metrics(), connect=lambda: FakeProducer(refuse_all=True))
    with pytest.raises(DeliveryError):
        f.pipeline.step()  # offset 2 stepped, its delivery fails: rolled back, not committed
    assert f.pipeline.delivery_failure
    after = f.engine.snapshot_partition(0).snapshot
    assert np.array_equal(after.stats, before.stats)
    assert f.consumer.committed_offsets == {tp(0): 2}
    f.pipeline.sink = KafkaSink(SETTINGS, Metrics(), connect=FakeProducer)
    f.pipeline.step()
    assert f.consumer.seeks == [(tp(0), 2)]
    assert f.consumer.committed_offsets == {tp(0): 3}
    assert not f.pipeline.delivery_failure


def test_a_batch_in_flight_that_fails_is_polled_again_with_the_batch_polled_meanwhile() -> None:
    ticks = [tick(0, i, "A", i + 1, price=1.0 + 0.01 * i) for i in range(4)]
    polls = [({0, 1}, {0: ticks[:2]}), (None, {0: ticks[2:3], 1: [tick(1, 0, "B", 1)]})]
    f = kafka_source(polls, overlap="poll")
    f.pipeline.sink = KafkaSink(SETTINGS, Metrics(), connect=lambda: FakeProducer(refuse_all=True))
    f.pipeline.step()  # offsets 0-1 stepped and sent: in flight, nothing committed
    assert f.consumer.committed_offsets == {}
    with pytest.raises(DeliveryError):
        f.pipeline.step()  # offset 2 and B polled; then 0-1 turn out not delivered
    assert f.consumer.committed_offsets == {}
    assert "A" not in f.engine.table.slot_of  # rolled back: A was created by the batch
    # The batch polled meanwhile is rewound first, so partition 0 resumes at offset 0.
    assert f.consumer.seeks == [(tp(0), 2), (tp(1), 0), (tp(0), 0)]
    assert f.pipeline.delivery_failure


def test_a_batch_in_flight_that_fails_is_polled_again_before_the_next_poll() -> None:
    ticks = [tick(0, i, "A", i + 1, price=1.0 + 0.01 * i) for i in range(3)]
    f = kafka_source([({0}, {0: ticks[:1]}), (None, {0: ticks[1:2]}), (None, {0: ticks[2:]})],
                     overlap="commit")  # fmt: skip
    f.pipeline.step()  # offset 0 sent: in flight
    f.pipeline.step()  # offset 0 final; offset 1 sent; offset 0 committed meanwhile
    assert f.consumer.committed_offsets == {tp(0): 1}
    f.pipeline.sink = KafkaSink(SETTINGS, Metrics(), connect=lambda: FakeProducer(refuse_all=True))
    f.pipeline.step()  # offset 0-1 fine, 2 sent to a producer that refuses it
    assert f.consumer.committed_offsets == {tp(0): 2}
    with pytest.raises(DeliveryError):
        f.pipeline.step()  # offset 2 not delivered: polled again, before any other poll
    assert f.consumer.committed_offsets == {tp(0): 2}
    assert f.consumer.seeks == [(tp(0), 2)] and len(f.consumer.polls) == 0
    assert f.pipeline.totals.received == 2


@pytest.mark.parametrize("overlap", ["commit", "poll"])
def test_a_rebalance_settles_the_batch_in_flight_before_its_partition_leaves(
    overlap: str,
) -> None:
    f = kafka_source([({0, 1}, {0: [tick(0, 0, "A", 1)], 1: [tick(1, 0, "B", 1)]}), ({1}, {})],
                     overlap=overlap)  # fmt: skip
    f.pipeline.step()  # A and B in flight
    f.pipeline.step()  # partition 0 revoked inside the poll: A and B settle first
    assert f.consumer.committed_offsets == {tp(0): 1, tp(1): 1}
    assert f.pipeline.totals.accepted == 2
    f.consumer.polls.append(({0, 1}, {}))
    f.pipeline.step()
    assert "A" in f.engine.table.slot_of  # kept at the offset committed: restored


def test_records_of_a_partition_not_assigned_are_not_handed_out() -> None:
    f = kafka_source([({0}, {0: [tick(0, 0, "A", 1)], 3: [tick(3, 0, "Z", 1)]})])
    assert f.source.poll(0.0).parse().ticks.series == ["A"]


@pytest.mark.parametrize(("committed_now", "restored"), [(1, True), (7, False)])
def test_a_revoked_partition_gets_its_state_back_only_if_nobody_moved_it_on(
    committed_now: int, restored: bool
) -> None:
    f = kafka_source([({0, 1}, {0: [tick(0, 0, "A", 1)], 1: [tick(1, 0, "B", 1)]}), ({1}, {})])
    f.pipeline.step()  # A and B stepped, offsets 1 and 1 committed
    f.source.poll(0.0)  # partition 0 revoked: A leaves the engine
    assert set(f.engine.table.slot_of) == {"B"}
    f.consumer.committed_offsets[tp(0)] = committed_now  # what another instance left
    f.consumer.polls.append(({0, 1}, {}))
    f.source.poll(0.0)
    assert ("A" in f.engine.table.slot_of) == restored
    assert "B" in f.engine.table.slot_of  # committed where we left it: restored


def test_a_rebalance_that_never_assigns_makes_the_consumer_join_again() -> None:
    """kafka-python can lose a rebalance's outcome: partitions revoked, then none, for good."""
    quick = replace(SETTINGS, max_poll_interval_ms=20, session_timeout_ms=20,
                    heartbeat_interval_ms=5)  # fmt: skip
    f = kafka_source([({0}, {0: [tick(0, 0, "A", 1)]})], settings=quick)
    f.pipeline.step()
    first = f.consumer
    first.listener.on_partitions_revoked(first.assigned)  # a rebalance begins ...
    first.assigned = set()  # ... and its assignment is lost
    wait_for(lambda: bool(f.source.poll(0.0).records), "the consumer joining again", 30.0)

    assert first.closed and len(f.consumers) == 2
    assert f.consumers[1].assignment() == {tp(0)}
    rejoins = f.source.metrics.registry.get_sample_value("forecaster_kafka_rejoins_total")
    assert rejoins == 1


def test_a_broker_down_at_start_means_empty_polls_and_not_connected() -> None:
    attempts = []

    def unreachable(listener: Any) -> tuple[Any, Any]:
        attempts.append(listener)
        raise KafkaTimeoutError("Unable to bootstrap")

    source = KafkaSource(SETTINGS, Metrics(), connect=unreachable)
    assert source.poll(0.0).records == []
    assert source.poll(0.0).records == []  # too soon for another attempt
    assert len(attempts) == 1 and not source.connected()


def test_reconnect_waits_double_up_to_the_longest() -> None:
    backoff = Backoff(longest=3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert not backoff.due()
    backoff.succeeded()
    assert backoff.due()


# --- configuration ----------------------------------------------------------------------------


def test_security_settings_pass_through_and_empty_ones_stay_unset() -> None:
    plain = client_configs(SETTINGS)
    assert "sasl_mechanism" not in plain and "ssl_cafile" not in plain
    secure = client_configs(
        Settings(bootstrap_servers="a:1, b:2", security_protocol="SASL_SSL",
                 sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p", ssl_cafile="ca")
    )  # fmt: skip
    assert secure["bootstrap_servers"] == ["a:1", "b:2"]
    assert (secure["sasl_plain_username"], secure["sasl_plain_password"]) == ("u", "p")
    assert secure["ssl_cafile"] == "ca"
    assert "s3cret" not in repr(Settings(sasl_password="s3cret"))


def test_both_clients_refresh_topic_metadata_as_often_as_configured() -> None:
    """kafka-python's default (5 min) left a leader assigned nothing for minutes when it
    joined while its topic's partitions were being created (seen in a suite run)."""
    settings = replace(SETTINGS, group_id="g", metadata_max_age_ms=7000)
    assert consumer_configs(settings)["metadata_max_age_ms"] == 7000
    assert producer_configs(settings)["metadata_max_age_ms"] == 7000
    assert Settings().metadata_max_age_ms < 300_000


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "TLS"}, "security_protocol must be one of"),
        ({"heartbeat_interval_ms": 20000}, "heartbeat_interval_ms must be below"),
        ({"fetch_max_wait_ms": 30000}, "fetch_max_wait_ms must be"),
        ({"delivery_timeout_ms": 1000}, "delivery_timeout_ms must be"),
        ({"poll_max_records": 0}, "poll_max_records must be >= 1"),
        ({"metadata_max_age_ms": 0}, "metadata_max_age_ms must be >= 1"),
    ],
)
def test_inconsistent_kafka_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**values)


def test_kafka_python_uses_the_c_crc32c() -> None:
    assert record_util.crc32c_c is not None


# --- produce ----------------------------------------------------------------------------------


def messages_of(path: Path) -> list[tuple[tuple[bytes | None, bytes], bool]]:
    source = CsvSource(path, max_batch=10_000)
    return [m for batch in iter(lambda: source.poll(0.0), None) for m in tick_messages(batch)]


def test_valid_rows_are_published_as_exactly_the_tick_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "prefix.csv"
    pd.read_csv(SAMPLE / "ticks.csv", dtype=str, keep_default_na=False).head(300).to_csv(
        path, index=False
    )
    from_file = parse_csv_frame(pd.read_csv(path, dtype=str, keep_default_na=False)).ticks
    messages = messages_of(path)
    from_messages = parse_messages([value for (_, value), _ in messages]).ticks
    assert all(is_tick for _, is_tick in messages)
    assert [key for (key, _), _ in messages] == [s.encode() for s in from_file.series]
    assert from_messages.series == from_file.series
    assert np.array_equal(from_messages.ts, from_file.ts)
    assert np.array_equal(from_messages.price, from_file.price)
    assert np.array_equal(from_messages.volume, from_file.volume, equal_nan=True)


def test_malformed_rows_are_published_so_that_the_service_rejects_them_alike() -> None:
    rows = pd.read_csv(SAMPLE / "malformed_ticks.csv", dtype=str, keep_default_na=False)
    messages = messages_of(SAMPLE / "malformed_ticks.csv")
    assert len(messages) == len(rows)
    engine_reasons = {"", RejectReason.TS_DUPLICATE.value, RejectReason.TS_OUT_OF_ORDER.value}
    for ((_, value), is_tick), expected in zip(messages, rows["expected_reason"], strict=True):
        parsed = parse_messages([value])
        reason = parsed.rejects[0].reason.value if parsed.rejects else ""
        assert reason == ("" if expected in engine_reasons else expected), value
        assert is_tick == (expected in engine_reasons)


def test_a_price_that_is_not_a_finite_number_stays_one_in_json() -> None:
    (_, value), _ = messages_of(SAMPLE / "malformed_ticks.csv")[13]
    assert math.isnan(json.loads(value)["price"])


@pytest.mark.parametrize(
    "command",
    [["-m", "forecaster", "produce", "--help"], ["-c", "import forecaster.io.produce"]],
)
def test_produce_does_not_import_tensorflow(command: list[str]) -> None:
    imports = subprocess.run(
        [sys.executable, "-X", "importtime", *command], capture_output=True, text=True, check=True
    ).stderr
    assert "forecaster.cli" in imports or "forecaster.io.produce" in imports
    assert "tensorflow" not in imports


def test_dead_letter_for_the_json_sink_stays_json_serialisable() -> None:
    letter = DeadLetter(
        Rejected(0, b"\xff", RejectReason.NOT_UTF8, "bad"),
        KafkaBatch({tp(0): [record(0, 0, b"\xff", b"\xfe")]}).origin(0),
    )
    assert json.dumps(letter.origin)


@dataclass
class GatedCheckpoints:
    """A directory of checkpoints whose loads of ``gated`` partitions wait for ``opened``."""

    store: CheckpointStore
    gated: set[int]
    opened: threading.Event = field(default_factory=threading.Event)

    def save(self, state: PartitionState, offset: int) -> bool:
        return self.store.save(state, offset)

    def load(self, partition: int) -> Checkpoint | None:
        if partition in self.gated:
            self.opened.wait(60.0)
        return self.store.load(partition)

    def close(self) -> None:
        self.store.close()


def test_a_partition_restoring_its_checkpoint_holds_back_only_its_own_ticks(
    tmp_path: Path,
) -> None:
    saved = Engine(EngineParams())
    saved.process(parse_messages([b'{"series": "A", "ts": 1000, "price": 2.0}']).ticks)
    store = CheckpointStore(tmp_path, EngineParams(), Metrics())
    assert store.save(saved.snapshot_partition(0), offset=1)
    gated = GatedCheckpoints(store, gated={0})
    f = kafka_source([({0, 1}, {})], checkpoints=gated)
    gauge = "forecaster_state_restoring_partitions"
    f.pipeline.step()
    assert f.states.restoring() == 2
    wait_for(lambda: f.pipeline.step() and f.states.restoring() == 1, "partition 1")
    assert (tp(1), 0) in f.consumer.seeks  # no checkpoint: rebuilt from its first offset

    f.consumer.polls.append((None, {0: [tick(0, 1, "A", 2)], 1: [tick(1, 0, "B", 1)]}))
    f.pipeline.step()
    assert set(f.engine.table.slot_of) == {"B"}  # partition 1 flows meanwhile, 0 is held
    assert f.states.restoring() == 1
    assert f.source.metrics.registry.get_sample_value(gauge) == 1
    gated.opened.set()
    wait_for(lambda: f.pipeline.step() and f.states.restoring() == 0, "partition 0")

    assert (tp(0), 1) in f.consumer.seeks
    assert "A" in f.engine.table.slot_of  # the checkpoint's series is back
    assert f.source.metrics.registry.get_sample_value(gauge) == 0
    restores = "forecaster_state_restore_duration_seconds_count"
    assert f.source.metrics.registry.get_sample_value(restores) == 2
