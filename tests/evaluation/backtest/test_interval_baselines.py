"""The interval baselines: causal, by hand on a short series, calibrated on a known stream."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from forecaster.evaluation import scoring
from forecaster.evaluation.backtest.interval_baselines import (
    INTERVAL_BASELINES,
    absolute_return_quantile,
    riskmetrics,
)

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)
SD = 0.01


def gaussian_walk(n: int, seed: int) -> np.ndarray:
    """Prices whose log returns are N(0, SD^2), independent."""
    return 100.0 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, SD, n)))


def coverages(lower: np.ndarray, upper: np.ndarray, prices: np.ndarray, skip: int) -> list[float]:
    """Coverage of the next price at each level, after ``skip`` warm-up ticks."""
    return [scoring.coverage(low[skip:-1], high[skip:-1], prices[skip + 1 :])
            for low, high in zip(lower, upper, strict=True)]  # fmt: skip


@pytest.mark.parametrize("name", sorted(INTERVAL_BASELINES))
def test_an_interval_uses_no_later_price(name: str) -> None:
    prices = gaussian_walk(400, seed=1)
    changed = prices.copy()
    changed[300:] *= 1.5
    before, after = (
        INTERVAL_BASELINES[name](prices, LEVELS),
        INTERVAL_BASELINES[name](changed, LEVELS),
    )
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old[:, :300], new[:, :300])
        assert not np.array_equal(old[:, 300:], new[:, 300:])


@pytest.mark.parametrize("name", sorted(INTERVAL_BASELINES))
def test_intervals_are_centred_on_the_last_price_and_nested_by_coverage(name: str) -> None:
    prices = gaussian_walk(300, seed=2)
    lower, upper = INTERVAL_BASELINES[name](prices, LEVELS)
    assert np.isnan(lower[:, 0]).all() and np.isnan(upper[:, 0]).all()  # no return seen yet
    np.testing.assert_allclose(lower[:, 1:] * upper[:, 1:] / prices[1:] ** 2, 1.0, rtol=1e-12)
    assert (np.diff(upper[:, 10:], axis=0) >= 0).all() and (
        np.diff(lower[:, 10:], axis=0) <= 0
    ).all()


def test_the_empirical_quantile_by_hand() -> None:
    """Absolute log returns 0.01, 0.03, 0.02 (rounded): at 80%, rank ceil(0.8 (n + 1)) of n,
    at most n: the largest of 1, of 2; then the 4th of 3, so again the largest."""
    prices = 100.0 * np.exp(np.cumsum([0.0, 0.01, -0.03, 0.02]))
    _, upper = absolute_return_quantile(prices, (0.8,))
    np.testing.assert_allclose(np.log(upper[0, 1:] / prices[1:]), [0.01, 0.03, 0.03], rtol=1e-9)
    _, upper = absolute_return_quantile(prices, (0.5,))  # ranks 1 of 1, 2 of 2, 2 of 3
    np.testing.assert_allclose(np.log(upper[0, 1:] / prices[1:]), [0.01, 0.03, 0.02], rtol=1e-9)


def test_riskmetrics_by_hand() -> None:
    """sigma^2 starts at the first squared return, then 0.94 sigma^2 + 0.06 r^2."""
    prices = 100.0 * np.exp(np.cumsum([0.0, 0.02, -0.01]))
    _, upper = riskmetrics(prices, (0.9,))
    z = NormalDist().inv_cdf(0.95)
    sigmas = [0.02, math.sqrt(0.94 * 0.02**2 + 0.06 * 0.01**2)]
    np.testing.assert_allclose(np.log(upper[0, 1:] / prices[1:]), np.multiply(z, sigmas), rtol=1e-9)


def test_on_gaussian_returns_both_cover_nominal() -> None:
    """Independent N(0, SD^2) log returns: the empirical quantile covers nominal within half a
    point; RiskMetrics' Gaussian interval, whose volatility estimate is noisy (about 32
    returns' worth), a little less but within 1.5 points, its width near the true one."""
    prices = gaussian_walk(40_000, seed=3)
    empirical = coverages(*absolute_return_quantile(prices, LEVELS), prices, skip=100)
    assert empirical == pytest.approx(LEVELS, abs=0.005)
    lower, upper = riskmetrics(prices, LEVELS)
    gaussian = coverages(lower, upper, prices, skip=100)
    assert gaussian == pytest.approx(LEVELS, abs=0.015)
    z = NormalDist().inv_cdf(0.95)
    half_width = np.log(upper[2, 100:] / prices[100:]).mean()
    assert half_width == pytest.approx(z * SD, rel=0.03)
