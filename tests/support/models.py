"""Random-weight serving models for tests that need a model but not TensorFlow."""

import numpy as np

from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import LayerWeights, Stepper


def random_stepper(spec: ModelSpec, seed: int = 0, version: str = "test-v1") -> Stepper:
    rng = np.random.default_rng(seed)
    gates = 4 if spec.cell == "lstm" else 3
    layers = []
    inputs = spec.n_features
    for _ in range(spec.layers):
        bias_shape = (gates * spec.units,) if spec.cell == "lstm" else (2, gates * spec.units)
        layers.append(
            LayerWeights(
                rng.normal(0, 0.4, (inputs, gates * spec.units)).astype(np.float32),
                rng.normal(0, 0.4, (spec.units, gates * spec.units)).astype(np.float32),
                rng.normal(0, 0.1, bias_shape).astype(np.float32),
            )
        )
        inputs = spec.units
    head = rng.normal(0, 0.3, (spec.units, 1)).astype(np.float32)
    return Stepper(spec, version, layers, head, np.zeros(1, np.float32))


def constant_stepper(spec: ModelSpec, value: float, version: str) -> Stepper:
    """A model whose every prediction is ``value``: zero head weights, bias only."""
    base = random_stepper(spec, seed=0, version=version)
    head = np.zeros_like(base.head_kernel)
    return Stepper(spec, version, base.layers, head, np.array([value], np.float32))
