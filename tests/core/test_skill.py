"""Each series' own linear head on the shared model, and its trust (forecaster/core/skill.py)."""

import numpy as np
import pytest

from forecaster.core.features import model_inputs, new_stats
from forecaster.core.skill import HEAD_PRIOR, MAX_GAIN, REGRESSORS, _ridge_solve, calibrate
from tests.support import reference_skill

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


@pytest.mark.parametrize("seed", range(5))
def test_the_head_weights_are_lapack_s_solution(seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = len(REGRESSORS)
    low, weights = np.empty((size, size)), np.empty(size)
    for _ in range(200):
        regressors = rng.normal(0, 3, (50, size))
        gram = regressors.T @ regressors * rng.random()
        cross = rng.normal(0, 10, size)
        _ridge_solve(gram, cross, low, weights)
        want = np.linalg.solve(gram + HEAD_PRIOR * np.eye(size), cross)
        np.testing.assert_allclose(weights, want, rtol=1e-9, atol=1e-12)


def test_calibrate_refuses_rows_outside_the_table_and_writes_none() -> None:
    stats, inputs = new_stats(3), np.zeros((2, len(REGRESSORS) - 1), np.float32)
    for slots in (np.array([0, 3]), np.array([-1, 0])):
        with pytest.raises(IndexError):
            calibrate(stats, slots, np.ones(2), np.ones(2), inputs)
    with pytest.raises(ValueError, match="length"):
        calibrate(stats, np.array([0]), np.ones(2), np.ones(2), inputs)
    with pytest.raises(ValueError, match="FEATURE_NAMES"):
        calibrate(stats, np.array([0, 1]), np.ones(2), np.ones(2), inputs[:, 1:])
    assert (stats == new_stats(3)).all()


TABLE_ROWS = 80
Round = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def random_round(rng: np.random.Generator, hostile: bool) -> Round:
    """Slots, outcomes, predictions and inputs of one round of 1 to 50 series, with outcomes
    up to thousands; if ``hostile``, also non-finite predictions and inputs, and values
    whose squares or products overflow."""
    rows = int(rng.integers(1, 51))
    slots = rng.choice(TABLE_ROWS, rows, replace=False)
    z = rng.normal(0.0, 1.0, rows) * 10.0 ** rng.choice([0, 0, 0, 1, 3], rows)
    prediction = rng.normal(0.0, 1.0, rows)
    inputs = rng.normal(0.0, 2.0, (rows, len(REGRESSORS) - 1)).astype(np.float32)
    if hostile:
        draw = rng.random(rows)
        z[draw < 0.02] = rng.choice([1e200, -1e200, 1e155, 1e300])
        prediction[(draw >= 0.02) & (draw < 0.06)] = rng.choice([np.nan, np.inf, -np.inf])
        prediction[(draw >= 0.06) & (draw < 0.08)] = rng.choice([1e160, -1e160, 1e300])
        inputs[(draw >= 0.08) & (draw < 0.09), 1] = rng.choice([np.nan, np.inf, 3e38])
    return slots, z, prediction, inputs


def assert_both_implementations_agree(seed: int, hostile: bool, atol: float) -> int:
    """Drive ``calibrate`` and the vectorised one through 300 rounds on tables of
    ``TABLE_ROWS`` series; the number of records the finite check kept from a forecast."""
    rng = np.random.default_rng(seed)
    got, want = new_stats(TABLE_ROWS), new_stats(TABLE_ROWS)
    restored = 0
    for _ in range(300):
        slots, z, prediction, inputs = random_round(rng, hostile)
        served = calibrate(got, slots, z, prediction, inputs)
        with np.errstate(invalid="ignore"):  # its gain * head of the rows it restores
            expected = reference_skill.calibrate(want, slots, z, prediction, inputs)
        np.testing.assert_allclose(served, expected, rtol=1e-9, atol=atol)
        no_forecast = (want["head_inputs"][slots] == 0.0).all(axis=1)
        restored += int((no_forecast & np.isfinite(prediction)).sum())
        assert (served[no_forecast] == 0.0).all()
        assert (got["head_inputs"][slots[no_forecast]] == 0.0).all()
        assert (got["last_head"][slots[no_forecast]] == 0.0).all()
        for name in reference_skill.RECORD_FIELDS:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=atol, err_msg=name)
            assert np.isfinite(got[name]).all(), name
    return restored


@pytest.mark.parametrize("seed", range(4))
def test_calibrate_is_the_vectorised_implementation(seed: int) -> None:
    """Against LAPACK's solve (the vectorised one's below UNROLLED_FROM rows), which rounds
    differently: equal but for rounding, on ordinary values."""
    assert assert_both_implementations_agree(seed, hostile=False, atol=1e-12) == 0


@pytest.mark.parametrize("seed", range(4))
def test_calibrate_is_the_vectorised_implementation_on_hostile_rounds(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against its unrolled Cholesky, the compiled one's arithmetic in the same order, so
    that even a head that cancels out of terms near overflow agrees."""
    monkeypatch.setattr(reference_skill, "UNROLLED_FROM", 0)
    assert assert_both_implementations_agree(seed, hostile=True, atol=0.0) > 100
