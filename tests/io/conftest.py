"""The Kafka test fixtures (one broker per test module, a service's settings and sample
ticks), shared by every Kafka test file of this folder."""

from tests.support.kafka import broker, kafka_client, sample_prefix, service_log, settings

__all__ = ["broker", "kafka_client", "sample_prefix", "service_log", "settings"]
