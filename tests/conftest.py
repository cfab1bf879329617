"""Shared test set-up. Heavy fixtures (brokers, Prometheus) live in tests/support/."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from forecaster.core.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.retraining.registry import Registry
from tests.support.models import random_stepper

# These machines are 2 cores and noisy: a per-example deadline would test the machine.
settings.register_profile("forecaster", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("forecaster")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one promoted, untrained (random-weight) 2-layer LSTM: model forecasts
    without paying for a training run (or a TensorFlow import: serving reads weights.npz)."""
    root = tmp_path_factory.mktemp("models")
    registry = Registry(root)
    model = random_stepper(ModelSpec(cell="lstm", layers=2, units=8), seed=3)
    registry.promote(registry.save(model, FeatureParams(), {"note": "untrained test model"}))
    return root
