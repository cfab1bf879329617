"""Heavy test fixtures: real processes the tests talk to (a Kafka-protocol broker, ...)."""
