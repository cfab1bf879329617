"""Classical prediction intervals for the next price, run causally over one series' prices.

Each takes the series' prices in time order and the nominal coverages, and returns the
lower and upper bounds, of shape (coverages, ticks): at every tick, the central interval
for the next price made with that tick and the ones before it. Both are centred on the
last price, symmetric in log price: ``[p exp(-h), p exp(h)]`` with a half-width ``h``
from the log returns seen so far (NaN on the first tick, before any return).

- ``empirical`` (``absolute_return_quantile``): ``h`` is the empirical ``coverage``
  quantile of the series' past absolute log returns (the split-conformal rank,
  ``ceil((n + 1) coverage)`` of ``n``, clipped to ``n``);
- ``riskmetrics``: ``h = z sigma``, a Gaussian quantile times the exponentially weighted
  volatility of J.P. Morgan's RiskMetrics (``sigma^2 <- lambda sigma^2 + (1 - lambda)
  r^2``, ``lambda`` 0.94, started at the first squared return).

>>> prices = np.array([100.0, 101.0, 100.0, 102.0])
>>> lower, upper = absolute_return_quantile(prices, (0.6,))
>>> np.round(upper[0] / prices, 4).tolist()  # |r| ranked 1 of 1, 2 of 2, 3 of 3
[nan, 1.01, 1.01, 1.02]
>>> lower, upper = riskmetrics(prices, (0.9,))
>>> bool(np.isnan(lower[0, 0])), bool((lower[0, 1:] < prices[1:]).all())
(True, True)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Bounds = tuple[FloatArray, FloatArray]
IntervalBaseline = Callable[[FloatArray, Sequence[float]], Bounds]

RISKMETRICS_DECAY = 0.94


def absolute_return_quantile(prices: FloatArray, coverages: Sequence[float]) -> Bounds:
    """The last price times ``exp(+-h)``, ``h`` the empirical quantile of the past absolute
    log returns at each coverage."""
    moves = np.abs(np.diff(np.log(prices)))
    half = np.full((len(coverages), len(prices)), math.nan)
    seen: list[float] = []  # the absolute returns so far, sorted
    for t, move in enumerate(moves.tolist(), start=1):
        bisect.insort(seen, move)
        for level, nominal in enumerate(coverages):
            rank = min(max(math.ceil((t + 1) * nominal), 1), t)
            half[level, t] = seen[rank - 1]
    return _around(prices, half)


def riskmetrics(
    prices: FloatArray, coverages: Sequence[float], decay: float = RISKMETRICS_DECAY
) -> Bounds:
    """The last price times ``exp(+-z sigma)``, ``sigma`` RiskMetrics' exponentially
    weighted volatility of the log returns, ``z`` the Gaussian quantile of each coverage."""
    returns = np.diff(np.log(prices))
    variance = np.full(len(prices), math.nan)
    running = returns[0] ** 2 if len(returns) else math.nan
    for t, value in enumerate(returns.tolist(), start=1):
        running = decay * running + (1.0 - decay) * value * value
        variance[t] = running
    z = np.array([NormalDist().inv_cdf(0.5 + nominal / 2.0) for nominal in coverages])
    return _around(prices, z[:, None] * np.sqrt(variance)[None, :])


def _around(prices: FloatArray, half: FloatArray) -> Bounds:
    return prices * np.exp(-half), prices * np.exp(half)


INTERVAL_BASELINES: dict[str, IntervalBaseline] = {
    "empirical": absolute_return_quantile,
    "riskmetrics": riskmetrics,
}
