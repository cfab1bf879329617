"""The Kafka fixtures (a Tansu broker per test module, a service's settings) for the
changelog store's tests."""

from tests.support.kafka import broker, kafka_client, settings

__all__ = ["broker", "kafka_client", "settings"]
