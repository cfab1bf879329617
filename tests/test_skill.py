"""The per-series trust in the model (forecaster/skill.py)."""

import numpy as np

from forecaster.features import new_stats
from forecaster.skill import MAX_GAIN, calibrate


def served_gains(predictions: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """Gain served at each tick for two series at once (rows: ticks, columns: series).

    The outcome at tick t is what followed the prediction made at tick t - 1.
    """
    stats = new_stats(predictions.shape[1])
    slots = np.arange(predictions.shape[1])
    served = np.array([calibrate(stats, slots, z, p) for p, z in zip(predictions, outcomes,
                                                                      strict=True)])  # fmt: skip
    return served / predictions


def test_skill_is_learnt_per_series() -> None:
    """Series 0: outcomes follow the predictions. Series 1: the predictions are noise."""
    rng = np.random.default_rng(0)
    predictions = rng.normal(0.0, 0.5, (3000, 2))
    noise = rng.normal(0.0, 1.0, (3000, 2))
    outcomes = noise.copy()
    outcomes[1:, 0] += predictions[:-1, 0]  # series 0's next outcome is its prediction + noise
    gains = served_gains(predictions, outcomes)
    assert 0.85 < gains[-1000:, 0].mean() < 1.15
    assert np.abs(gains[-1000:, 1]).mean() < 0.15
    assert ((gains >= 0.0) & (gains <= MAX_GAIN)).all()


def test_a_series_is_not_trusted_before_it_has_a_record() -> None:
    rng = np.random.default_rng(1)
    predictions = rng.normal(0.0, 0.5, (5, 2))
    gains = served_gains(predictions, np.zeros((5, 2)))
    assert (gains == 0.0).all()  # outcomes never agreed with any prediction


def test_a_model_that_predicts_too_little_is_scaled_up() -> None:
    rng = np.random.default_rng(2)
    predictions = rng.normal(0.0, 0.5, (3000, 1))
    outcomes = rng.normal(0.0, 1.0, (3000, 1))
    outcomes[1:, 0] += 1.5 * predictions[:-1, 0]
    assert 1.3 < served_gains(predictions, outcomes)[-1000:, 0].mean() < 1.7
