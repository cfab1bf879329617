"""Turn recorded history into a serving model: train, save to the registry, export the step.

Imports TensorFlow when a model is trained; constructing a Trainer does not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from forecaster.dataset import Sequence
from forecaster.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import Stepper
from forecaster.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainedModel:
    stepper: Stepper
    details: dict[str, Any]


@dataclass(frozen=True)
class Trainer:
    """Trains models of one spec on features computed with one set of params."""

    spec: ModelSpec
    features: FeatureParams
    window: int = 64
    epochs: int = 30
    seed: int = 0
    registry: Registry | None = None
    promote: bool = True

    def train(self, sequences: list[Sequence], verbose: int = 0) -> TrainedModel:
        """Fit, save (and promote) when a registry is set; raises TrainingError on failure."""
        from forecaster.model import keras_model, training

        params = training.TrainParams(
            window=self.window, stride=max(1, self.window // 2), epochs=self.epochs, seed=self.seed
        )
        model, report = training.train(
            sequences, self.spec, params, clip=self.features.clip, verbose=verbose
        )
        details = {"training": report.to_dict(), "series": len(sequences)}
        if self.registry is None:
            version = f"{self.spec.cell}-{keras_model.weights_digest(model)}"
        else:
            version = self.registry.save(model, self.features, details)
            if self.promote:
                self.registry.promote(version)
        log.info("trained model %s: %s", version, report)
        return TrainedModel(keras_model.to_stepper(model, version), details)
