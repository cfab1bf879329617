"""Classical online forecasters of the next price, run causally over one series' prices.

Each takes the series' prices in time order and returns, for every tick, the forecast
of the next price made with that tick and the ones before it. Smoothing constants are
chosen on the first ``tune`` ticks only (the part of the series the backtested model
could not have forecast yet), by the MAE of their one-step forecasts there.

>>> prices = np.array([10.0, 11.0, 12.0, 13.0])
>>> naive(prices).tolist(), drift(prices).tolist()
([10.0, 11.0, 12.0, 13.0], [10.0, 12.0, 13.0, 14.0])
>>> holt(prices, alpha=np.array([1.0]), beta=np.array([1.0]))[0].tolist()
[10.0, 12.0, 13.0, 14.0]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Baseline = Callable[[FloatArray, int], FloatArray]

ALPHAS = np.array([0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0])
BETAS = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2])


def naive(prices: FloatArray, tune: int = 0) -> FloatArray:
    """The last price."""
    return prices.copy()


def drift(prices: FloatArray, tune: int = 0) -> FloatArray:
    """The last price plus the average step since the first tick (random walk with drift)."""
    steps = np.arange(len(prices), dtype=np.float64)
    return prices + np.where(steps > 0, (prices - prices[0]) / np.maximum(steps, 1.0), 0.0)


def ewma(prices: FloatArray, tune: int) -> FloatArray:
    """Simple exponential smoothing, its smoothing constant tuned on the first ``tune`` ticks."""
    best = _tuned_index(prices, tune, ALPHAS, np.zeros_like(ALPHAS))
    forecasts: FloatArray = holt(prices, alpha=ALPHAS[best : best + 1], beta=np.zeros(1))[0]
    return forecasts


def holt_linear(prices: FloatArray, tune: int) -> FloatArray:
    """Holt's linear trend, both smoothing constants tuned on the first ``tune`` ticks."""
    alphas, betas = (grid.ravel() for grid in np.meshgrid(ALPHAS, BETAS))
    best = _tuned_index(prices, tune, alphas, betas)
    forecasts: FloatArray = holt(
        prices, alpha=alphas[best : best + 1], beta=betas[best : best + 1]
    )[0]
    return forecasts


def holt(prices: FloatArray, alpha: FloatArray, beta: FloatArray) -> FloatArray:
    """Holt's recursion for each (alpha, beta) pair at once: forecasts of shape (pairs, ticks).

    ``beta = 0`` with the trend starting at 0 is simple exponential smoothing.
    """
    out = np.empty((len(alpha), len(prices)))
    level = np.full(len(alpha), prices[0])
    trend = np.zeros(len(alpha))
    out[:, 0] = level
    for t, price in enumerate(prices[1:].tolist(), start=1):
        previous = level
        level = alpha * price + (1.0 - alpha) * (level + trend)
        trend = beta * (level - previous) + (1.0 - beta) * trend
        out[:, t] = level + trend
    return out


def _tuned_index(prices: FloatArray, tune: int, alphas: FloatArray, betas: FloatArray) -> int:
    """The pair whose one-step forecasts within the first ``tune`` ticks have the least MAE."""
    head = prices[:tune]
    if len(head) < 2:
        return int(np.flatnonzero(alphas == 1.0)[0])  # nothing to tune on: the naive forecast
    errors = np.abs(holt(head, alphas, betas)[:, :-1] - head[1:])
    return int(np.argmin(errors.mean(axis=1)))


BASELINES: dict[str, Baseline] = {
    "naive": naive,
    "drift": drift,
    "ewma": ewma,
    "holt": holt_linear,
}
