"""Kafka clients: what consumer and producer are configured with, how they are built and
closed so that a broker that is down leaks nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from forecaster.config import Settings

CLIENT_ID = "forecaster"
CONNECT_TIMEOUT_MS = 5000  # one attempt to reach a broker (kafka-python's bootstrap)
CLOSE_TIMEOUT_S = 5.0

ConsumerRecord = Any  # kafka-python's namedtuple: topic, partition, offset, key, value, ...


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


def consumer_connector(
    settings: Settings,
) -> Callable[[ConsumerRebalanceListener], tuple[Any, Any]]:
    """What builds the input's subscribed consumer and its network client, on the client
    ``kafka_client`` names (confluent-kafka is imported only when it is named)."""
    configs = consumer_configs(settings)
    if settings.kafka_client == "confluent":
        from forecaster.io.kafka import confluent

        return partial(confluent.connect_consumer, configs, settings.input_topic)
    return partial(connect_consumer, configs, settings.input_topic)


def producer_connector(settings: Settings) -> Callable[[], Any]:
    """What builds the output's producer, on the client ``kafka_client`` names."""
    configs = producer_configs(settings)
    if settings.kafka_client == "confluent":
        from forecaster.io.kafka import confluent

        return partial(confluent.connect_producer, configs)
    return partial(connect_producer, configs)


def reaches_a_broker(net_client: Any) -> bool:
    """Whether the client holds an open connection to any broker of the cluster."""
    return any(net_client.connected(broker.node_id) for broker in net_client.cluster.brokers())


def close_producer(producer: Any, timeout: float) -> None:
    """Close ``producer`` (if any), abandoning what it still holds after ``timeout``.

    kafka-python 3.0.12's ``close`` flushes first and raises KafkaTimeoutError when records
    are still in flight at the timeout: exactly the case of a failed delivery.
    """
    if producer is not None:
        with contextlib.suppress(KafkaError):
            producer.close(timeout=timeout)
