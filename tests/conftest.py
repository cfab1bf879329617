"""Shared test set-up. Heavy fixtures (brokers, Prometheus) live in tests/support/."""

from hypothesis import HealthCheck, settings

# These machines are 2 cores and noisy: a per-example deadline would test the machine.
settings.register_profile("forecaster", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("forecaster")
