"""The confluent-kafka client's translation of settings and errors (no broker needed);
its behaviour on a broker is the Kafka contract and behaviour suites' (``on_both_clients``)."""

from __future__ import annotations

import json
from dataclasses import replace

import confluent_kafka
import pytest
from kafka.errors import (
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from forecaster.config import Settings, load
from forecaster.errors import ConfigError
from forecaster.io.kafka import (
    close_producer,
    consumer_configs,
    is_permanent,
    producer_configs,
)
from forecaster.io.kafka.confluent import (
    Batch,
    BrokerStates,
    ConfluentProducer,
    Delivery,
    Flush,
    confluent_configs,
    kafka_error,
)
from tests.support.broker import create_topics, free_port
from tests.support.kafka import WAIT_S

SECURE = replace(
    Settings(),
    bootstrap_servers="k1:9093, k2:9093",
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="svc",
    sasl_password="secret",
    ssl_cafile="/etc/ca.pem",
    ssl_certfile="/etc/client.pem",
    ssl_keyfile="/etc/client.key",
    kafka_client="confluent",
)


def test_security_settings_map_to_librdkafka_names() -> None:
    conf = confluent_configs(consumer_configs(SECURE))
    assert conf["bootstrap.servers"] == "k1:9093,k2:9093"
    assert {name: conf[name] for name in ("security.protocol", "sasl.mechanism", "sasl.username",
            "sasl.password", "ssl.ca.location", "ssl.certificate.location",
            "ssl.key.location")} == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc", "sasl.password": "secret", "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem", "ssl.key.location": "/etc/client.key",
    }  # fmt: skip
    # librdkafka knows every name (it reads the certificate files at once: none here)
    known = {name: value for name, value in conf.items() if not name.startswith("ssl.")}
    confluent_kafka.Consumer(known | {"security.protocol": "SASL_PLAINTEXT"}).close()


def test_the_consumer_commits_only_explicitly_and_the_producer_waits_for_every_replica() -> None:
    consumer = confluent_configs(consumer_configs(SECURE))
    producer = confluent_configs(producer_configs(SECURE))
    assert (consumer["enable.auto.commit"], consumer["auto.offset.reset"]) == (False, "earliest")
    assert consumer["session.timeout.ms"] == SECURE.session_timeout_ms
    assert (producer["acks"], producer["enable.idempotence"]) == ("all", True)
    assert producer["delivery.timeout.ms"] == SECURE.delivery_timeout_ms
    assert producer["linger.ms"] == SECURE.linger_ms


def error(code: int) -> confluent_kafka.KafkaError:
    return confluent_kafka.KafkaError(code, "why")


@pytest.mark.parametrize(
    ("code", "kind", "permanent_for_forecasts", "permanent_for_dead_letters"),
    [
        (confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE, MessageSizeTooLargeError, True, True),
        (confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED, TopicAuthorizationFailedError,
         True, True),
        (confluent_kafka.KafkaError._UNKNOWN_TOPIC, UnknownTopicOrPartitionError, False, True),
        (confluent_kafka.KafkaError._MSG_TIMED_OUT, KafkaTimeoutError, False, False),
        (confluent_kafka.KafkaError._TRANSPORT, KafkaError, False, False),
    ],
)  # fmt: skip
def test_librdkafka_errors_are_judged_as_kafka_python_errors_are(
    code: int, kind: type[KafkaError], permanent_for_forecasts: bool,
    permanent_for_dead_letters: bool,
) -> None:  # fmt: skip
    translated = kafka_error(confluent_kafka.KafkaException(error(code)))
    assert type(translated) is kind
    assert is_permanent(translated, dead_letter=False) is permanent_for_forecasts
    assert is_permanent(translated, dead_letter=True) is permanent_for_dead_letters


def test_a_delivery_reads_as_a_kafka_python_future() -> None:
    flush, later = Flush(), Flush()
    acknowledged, refused, waiting = Delivery(flush), Delivery(flush), Delivery(later)
    refused.exception = kafka_error(error(confluent_kafka.KafkaError.MSG_SIZE_TOO_LARGE))
    assert refused.is_done and not refused.succeeded()
    assert not acknowledged.is_done and not acknowledged.succeeded()  # in flight
    flush.ended = True  # no failure reported: acknowledged
    assert acknowledged.succeeded() and acknowledged.is_done
    assert isinstance(refused.exception, MessageSizeTooLargeError) and not refused.succeeded()
    assert not waiting.is_done and not waiting.succeeded()


def statistics(**states: str) -> str:
    brokers = {name: {"state": state, "source": "learned"} for name, state in states.items()}
    brokers[":0/internal"] = {"state": "UP", "source": "internal"}
    return json.dumps({"brokers": brokers})


def test_a_broker_counts_as_reached_only_while_librdkafka_says_it_is_up() -> None:
    brokers = BrokerStates()
    assert not brokers.brokers()  # no statistics yet: not connected
    brokers.update(statistics(**{"k1:9093/1": "UP", "k2:9093/2": "CONNECT"}))
    assert [b.node_id for b in brokers.cluster.brokers()] == ["k1:9093/1"]
    assert brokers.connected("k1:9093/1") and not brokers.connected("k2:9093/2")
    brokers.update(statistics(**{"k1:9093/1": "DOWN"}))
    assert not brokers.brokers()  # the internal broker is no broker of the cluster


def test_the_client_is_a_setting_of_toml_environment_and_checked() -> None:
    assert Settings().kafka_client == "kafka-python"
    assert load(environ={"FORECASTER_KAFKA_CLIENT": "confluent"}).kafka_client == "confluent"
    with pytest.raises(ConfigError, match="kafka_client"):
        load(environ={"FORECASTER_KAFKA_CLIENT": "librdkafka"})


@pytest.mark.kafka
def test_records_are_acknowledged_by_their_flush_and_fail_when_it_times_out(
    settings: Settings,
) -> None:
    create_topics(settings.bootstrap_servers, {settings.output_topic: 2})
    producer = ConfluentProducer(producer_configs(settings))
    try:
        sent = [producer.send(settings.output_topic, b"v", b"k%d" % i) for i in range(3)]
        assert not any(delivery.is_done for delivery in sent)  # in flight
        producer.flush(WAIT_S)
    finally:
        close_producer(producer, WAIT_S)
    assert all(delivery.succeeded() for delivery in sent)

    nowhere = replace(settings, bootstrap_servers=f"127.0.0.1:{free_port()}")  # no broker
    stuck = ConfluentProducer(producer_configs(nowhere))
    try:
        late = [stuck.send("t", b"v", b"k", partition=0) for _ in range(3)]
        with pytest.raises(KafkaTimeoutError, match="3 records not acknowledged"):
            stuck.flush(0.5)
    finally:
        close_producer(stuck, 0.0)
    assert all(delivery.is_done and not delivery.succeeded() for delivery in late)
    assert not any(is_permanent(delivery.exception, dead_letter=False) for delivery in late)


@pytest.mark.kafka
def test_a_batch_is_queued_in_one_call_up_to_the_first_record_the_client_refuses(
    settings: Settings,
) -> None:
    create_topics(settings.bootstrap_servers, {settings.output_topic: 2})
    producer = ConfluentProducer(producer_configs(settings) | {"max_request_size": 1000})
    values = [b"v0", b"v1", b"x" * 2000, b"v3"]
    try:
        batch = producer.send_batch(settings.output_topic, [b"k0", b"k1", b"k2", b"k3"], values)
        assert len(batch) == 2  # the third is too large for the client: left to send()
        with pytest.raises(MessageSizeTooLargeError):
            producer.send(settings.output_topic, values[2], b"k2")
        assert not any(delivery.is_done for delivery in batch)  # in flight
        producer.flush(WAIT_S)
    finally:
        close_producer(producer, WAIT_S)
    assert [delivery.succeeded() for delivery in batch] == [True, True]


def test_the_kth_failure_of_a_topic_is_pinned_to_its_kth_record_across_sends_and_batches() -> None:
    nowhere = replace(Settings(), bootstrap_servers=f"127.0.0.1:{free_port()}")
    producer = ConfluentProducer(producer_configs(nowhere))
    try:
        first = producer.send("t", b"v", b"k", partition=0)
        batch = Batch(producer._flush, 2)  # as send_batch keeps it, without a partition check
        producer._sent["t"].append(batch)
        last = producer.send("t", b"v", b"k", partition=0)
        report = confluent_kafka.KafkaError(confluent_kafka.KafkaError._MSG_TIMED_OUT, "late")
        message = type("Message", (), {"topic": lambda self: "t"})()
        for _ in range(3):
            producer._failed(report, message)
        assert isinstance(first.exception, KafkaTimeoutError)
        assert [delivery.exception is not None for delivery in batch] == [True, True]
        assert last.exception is None  # the fourth record: no fourth failure
    finally:
        close_producer(producer, 0.0)


class FatallyFailed:
    """librdkafka's producer after a fatal error (an idempotent producer whose broker lost
    its id), as confluent-kafka 2.16 showed it: its flush raises the SystemError its
    delivery callbacks were left with (``/tmp`` reproduction: kill and restart Tansu under
    a producer that sent before, then flush three times)."""

    def flush(self, timeout: float) -> int:
        raise SystemError("UnknownProducerIdError returned a result with an exception set")

    def purge(self) -> None:
        pass


def test_a_producer_failed_for_good_raises_a_kafka_error_the_sink_fails_the_batch_on() -> None:
    nowhere = Settings(bootstrap_servers=f"127.0.0.1:{free_port()}", kafka_client="confluent")
    producer = ConfluentProducer(producer_configs(nowhere))
    real, producer._producer = producer._producer, FatallyFailed()
    try:
        with pytest.raises(KafkaError, match="exception set"):
            producer.flush(1.0)
        close_producer(producer, 0.0)  # as the sink drops it: nothing raised
    finally:
        real.purge()
        real.flush(0)
