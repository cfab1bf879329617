"""Each series' own linear head on the shared model, and its trust (forecaster/core/skill.py)."""

import numpy as np
import pytest

from forecaster.core.features import model_inputs, new_stats
from forecaster.core.skill import (
    HEAD_PRIOR,
    MAX_GAIN,
    REGRESSORS,
    UNROLLED_FROM,
    _ridge_weights,
    calibrate,
)

TICK_NS = 150 * 1_000_000_000


def served(predictions: np.ndarray, outcomes: np.ndarray) -> np.ndarray:
    """Prediction served at each tick for several series at once (rows: ticks, columns: series).

    ``outcomes[t]`` is the standardised return of tick t, i.e. what followed tick t - 1.
    """
    stats = new_stats(predictions.shape[1])
    slots = np.arange(predictions.shape[1])
    rows = []
    for tick, (prediction, z) in enumerate(zip(predictions, outcomes, strict=True)):
        ts = np.full(len(z), tick * TICK_NS)
        rows.append(calibrate(stats, slots, z, prediction, model_inputs(z, np.zeros_like(z), ts)))
    return np.array(rows)


def test_a_model_that_forecasts_a_series_well_is_followed_and_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    predictions = rng.normal(0.0, 0.5, (3000, 2))
    outcomes = rng.normal(0.0, 1.0, (3000, 2))
    outcomes[1:, 0] += predictions[:-1, 0]  # series 0's next outcome is its prediction + noise
    result = served(predictions, outcomes)
    ratio = result[-1000:] / predictions[-1000:]
    assert 0.85 < np.median(ratio[:, 0]) < 1.1
    assert np.abs(result[-1000:, 1]).mean() < 0.05 * np.abs(predictions[:, 1]).mean()


def test_a_series_structure_is_learnt_even_where_the_model_misses_it() -> None:
    """An AR(1) series with phi = 0.5 next to a random walk; the model predicts nothing."""
    rng = np.random.default_rng(1)
    outcomes = rng.normal(0.0, 1.0, (3000, 2))
    for t in range(1, 3000):
        outcomes[t, 0] += 0.5 * outcomes[t - 1, 0]
    result = served(np.zeros((3000, 2)), outcomes)
    error = np.abs(outcomes[1:] - result[:-1])[-2000:].mean(axis=0)
    naive = np.abs(outcomes[1:])[-2000:].mean(axis=0)
    assert error[0] / naive[0] < 0.90  # the true conditional mean gets sqrt(0.75) = 0.87
    assert error[1] / naive[1] < 1.005  # the random walk stays (almost) naive


def test_a_series_is_not_trusted_before_it_has_a_record() -> None:
    rng = np.random.default_rng(2)
    result = served(rng.normal(0.0, 0.5, (5, 2)), np.zeros((5, 2)))
    assert (result == 0.0).all()  # outcomes never agreed with any forecast


def test_the_trust_never_exceeds_its_bound() -> None:
    """Outcomes twice the prediction: the head scales up, the trust stays within MAX_GAIN."""
    rng = np.random.default_rng(3)
    predictions = rng.normal(0.0, 0.5, (2000, 1))
    outcomes = rng.normal(0.0, 0.2, (2000, 1))
    outcomes[1:, 0] += 2.0 * predictions[:-1, 0]
    ratio = served(predictions, outcomes)[-500:, 0] / predictions[-500:, 0]
    assert 1.7 < np.median(ratio) <= 2.0 * MAX_GAIN


def history(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The statistics of one series after ``n`` ticks of random predictions and outcomes."""
    rng = np.random.default_rng(seed)
    stats, slot = new_stats(1), np.array([0])
    for tick in range(n):
        z = rng.normal(0.0, 1.0, 1)
        calibrate(stats, slot, z, rng.normal(0.0, 0.5, 1), model_inputs(z, z, np.array([tick])))
    return stats, slot, rng.normal(0.0, 1.0, 1)


def test_a_non_finite_prediction_is_no_forecast_but_its_outcome_still_counts() -> None:
    stats, slot, z = history(50, seed=4)
    inputs = model_inputs(z, z, np.array([TICK_NS]))
    reference = stats.copy()
    calibrate(reference, slot, z, np.array([0.0]), inputs)
    for bad in (np.nan, np.inf, -np.inf):
        got = stats.copy()
        assert calibrate(got, slot, z, np.array([bad]), inputs).tolist() == [0.0]
        for name in ("head_gram", "head_cross", "skill_cross", "skill_power"):
            np.testing.assert_array_equal(got[name], reference[name], err_msg=name)
        assert (got["head_inputs"] == 0).all() and got["last_head"][0] == 0.0


def test_a_record_never_takes_a_non_finite_value() -> None:
    stats, slot, z = history(50, seed=5)
    inputs = model_inputs(z, z, np.array([TICK_NS]))
    for _ in range(3):  # a finite prediction whose square overflows
        served = calibrate(stats, slot, z, np.array([1e300]), inputs)
        assert np.isfinite(served).all()
        for name in stats.dtype.names or ():
            assert np.isfinite(stats[name]).all(), name


@pytest.mark.parametrize("rows", [1, UNROLLED_FROM - 1, UNROLLED_FROM, 3000])
def test_the_head_weights_are_lapack_s_solution_at_every_batch_size(rows: int) -> None:
    rng = np.random.default_rng(rows)
    regressors = rng.normal(0, 3, (rows, 50, len(REGRESSORS)))
    gram = np.einsum("nti,ntj->nij", regressors, regressors) * rng.random((rows, 1, 1))
    cross = rng.normal(0, 10, (rows, len(REGRESSORS)))
    want = np.linalg.solve(gram + HEAD_PRIOR * np.eye(len(REGRESSORS)), cross[:, :, None])
    np.testing.assert_allclose(_ridge_weights(gram, cross), want[:, :, 0], rtol=1e-9, atol=1e-12)
