"""Kafka transport: ticks from a topic, forecasts and dead letters to topics, at least once.

Input messages are JSON ticks keyed by series, so a series always lives on one
partition. Each forecast goes to ``output_topic`` keyed by its series; each rejected
message goes to ``dlq_topic`` as received, bounded, with headers saying why and where
from (``sink``).

Delivery is at least once: a polled batch is stepped, its forecasts and dead letters
are sent, the producer's acknowledgement of every record is awaited, and only then
are the batch's offsets (last offset + 1 per partition) committed. If any record is
not acknowledged for a transient reason (broker down, timeout) the sink raises
DeliveryError, nothing is committed, and the pipeline rolls the engine back to before
the batch and rewinds the source to the batch's first offsets: the batch is stepped
again, with the same results. A record the client or broker refuses for good (too
large, invalid, not authorised; for dead letters also an unknown topic or a topic that
cannot take records) is counted in ``forecaster_kafka_produce_errors_total{kind=
"permanent"}`` and not retried: it must not hold the input back forever.

With ``processing_guarantee = "exactly_once"`` the batch is delivered by committing one
transaction per input partition instead, holding its forecasts, dead letters,
checkpoint chunks and input offset (``transactions``, ``TransactionalSink``).

Input messages must be keyed by their series id (``require_series_key``): a tick whose
key is missing or differs is a dead letter (key_mismatch). A dead letter keeps the
original key, headers and at most ``max_message_bytes`` of the value (see
``dead_letter_message``), so it always fits in one produce request.

As the group moves partitions, the source reports them to a ``PartitionListener``
(``forecaster.state.partitions`` keeps the series state) and seeks where it is told;
kafka-python calls its rebalance listener only from inside ``poll()`` (the caller blocks
while the listener runs on the client's IO thread), so between two polls the engine is
never mid-rebalance.

While no broker is reachable, the source reports ``connected() == False`` and polls
return empty batches; it keeps reconnecting with backoff, and a batch in flight is
retried, never committed, until its records are acknowledged.

The package: ``client`` (configuration, building and closing clients), ``source``
(batches and the group member), ``sink`` (forecasts and dead letters) and
``transactions`` (exactly once).
"""

from forecaster.io.kafka.client import (
    CLOSE_TIMEOUT_S,
    client_configs,
    close_producer,
    connect_consumer,
    connect_producer,
    construct,
    consumer_configs,
    producer_configs,
)
from forecaster.io.kafka.sink import (
    KEPT_HEADER_BYTES,
    KEPT_KEY_BYTES,
    KafkaSink,
    TransactionalSink,
    dead_letter_message,
    is_permanent,
)
from forecaster.io.kafka.source import GroupListener, KafkaBatch, KafkaSource
from forecaster.io.kafka.transactions import KafkaTransactions, transactional_id

__all__ = [
    "CLOSE_TIMEOUT_S",
    "KEPT_HEADER_BYTES",
    "KEPT_KEY_BYTES",
    "GroupListener",
    "KafkaBatch",
    "KafkaSink",
    "KafkaSource",
    "KafkaTransactions",
    "TransactionalSink",
    "client_configs",
    "close_producer",
    "connect_consumer",
    "connect_producer",
    "construct",
    "consumer_configs",
    "dead_letter_message",
    "is_permanent",
    "producer_configs",
    "transactional_id",
]
