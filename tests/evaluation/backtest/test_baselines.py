"""The baselines are causal and tune on the tuning part only."""

import numpy as np
import pytest

from forecaster.evaluation.backtest.baselines import (
    BASELINES,
    drift,
    ewma,
    holt,
    holt_linear,
    naive,
)


def random_walk(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_a_forecast_uses_no_later_price(name: str) -> None:
    prices = random_walk(400, seed=1)
    changed = prices.copy()
    changed[300:] *= 1.5  # the future changes from tick 300 on; the tuning part (200) does not
    before, after = BASELINES[name](prices, 200), BASELINES[name](changed, 200)
    np.testing.assert_array_equal(before[:300], after[:300])
    assert not np.array_equal(before[300:], after[300:])


@pytest.mark.parametrize("tuner", [ewma, holt_linear])
def test_smoothing_is_chosen_on_the_tuning_part_only(tuner) -> None:  # type: ignore[no-untyped-def]
    """A wild second half changes no forecast made with the same smoothing constants."""
    trend = 100.0 + 0.5 * np.arange(300) + np.random.default_rng(2).normal(0, 0.2, 300)
    wild = trend.copy()
    wild[150:] = 100.0 + np.random.default_rng(3).normal(0, 30.0, 150)
    np.testing.assert_array_equal(tuner(trend, 150)[:150], tuner(wild, 150)[:150])


def test_holt_tracks_a_trend_that_naive_lags() -> None:
    trend = 100.0 + 0.5 * np.arange(300) + np.random.default_rng(4).normal(0, 0.05, 300)
    next_price = trend[1:]
    holt_error = np.abs(holt_linear(trend, 150)[150:-1] - next_price[150:]).mean()
    naive_error = np.abs(naive(trend)[150:-1] - next_price[150:]).mean()
    assert holt_error < 0.3 * naive_error


def test_ewma_smooths_noise_around_a_level() -> None:
    noisy = 50.0 + np.random.default_rng(5).normal(0, 1.0, 400)
    ewma_error = np.abs(ewma(noisy, 200)[200:-1] - noisy[201:]).mean()
    naive_error = np.abs(naive(noisy)[200:-1] - noisy[201:]).mean()
    assert ewma_error < 0.8 * naive_error


def test_without_a_tuning_part_smoothing_falls_back_to_naive() -> None:
    prices = random_walk(50, seed=6)
    np.testing.assert_array_equal(ewma(prices, 0), prices)
    np.testing.assert_array_equal(holt_linear(prices, 1), prices)


def test_drift_and_holt_recursions_by_hand() -> None:
    prices = np.array([10.0, 12.0, 13.0])
    assert drift(prices).tolist() == [10.0, 14.0, 14.5]
    # alpha 0.5, beta 0.5: level 11, trend 0.5 -> 11.5; level 12.25, trend 0.875 -> 13.125
    forecasts = holt(prices, alpha=np.array([0.5]), beta=np.array([0.5]))[0]
    np.testing.assert_allclose(forecasts, [10.0, 11.5, 13.125])
