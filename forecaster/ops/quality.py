"""Online forecast quality: each model forecast scored when its series' next price arrives.

A point is a model forecast (``previous_forecast > 0``; naive forecasts are not scored)
made at ``previous_price`` and followed by ``price``. Errors are relative to the price
the forecast was made at, so series at 0.07 and at 4000 weigh alike:

- model error ``(previous_forecast - price) / previous_price``
- naive error ``(previous_price - price) / previous_price`` (the last price as forecast)
- a *move* is a point whose price changed; a *hit* is a move whose direction the model
  forecast (``sign(previous_forecast - previous_price) == sign(price - previous_price)``).

``RollingQuality`` keeps exponentially weighted sums of |error|, |naive error|, error²,
moves and hits, with a half-life in points: O(1) state, one vectorised pass per batch.
MASE is the model's weighted MAE over the naive one's on the same points (< 1: better
than naive). ``update`` also returns the batch's plain sums, for counters that PromQL
can take its own windows of with ``rate()``.

>>> quality = RollingQuality(halflife=100)
>>> sums = quality.add(price=np.array([12.0, 10.5]), previous_price=np.array([10.0, 10.0]),
...                    previous_forecast=np.array([11.0, 0.0]))  # the 2nd row was naive
>>> sums.points, sums.price_moves, sums.direction_hits
(1, 1, 1)
>>> quality.get()
Quality(mae=0.1, rmse=0.1, mase=0.5, directional_accuracy=1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.core.engine import ForecastBatch

FloatArray = npt.NDArray[np.float64]

DEFAULT_HALFLIFE = Settings.quality_halflife  # in points


@dataclass(frozen=True, slots=True)
class Quality:
    """Rolling quality; NaN where there is nothing to measure yet."""

    mae: float
    rmse: float
    mase: float
    directional_accuracy: float


@dataclass(frozen=True, slots=True)
class Sums:
    """Plain (unweighted) sums over the points of one batch."""

    points: int
    abs_error: float
    naive_abs_error: float
    squared_error: float
    price_moves: int
    direction_hits: int


class DecayingSums:
    """Sums of per-point terms, each point weighted by ``0.5 ** (age / halflife)``, ``age``
    counted in points from the newest (0).

    >>> sums = DecayingSums(halflife=1.0, terms=1)
    >>> sums.add(np.array([[4.0, 2.0]])).tolist()  # 4 * 0.5 + 2
    [4.0]
    """

    def __init__(self, halflife: float, terms: int) -> None:
        if halflife <= 0:
            raise ValueError(f"halflife must be > 0, got {halflife}")
        self.decay = 0.5 ** (1.0 / halflife)
        self.sums = np.zeros(terms)

    def add(self, terms: FloatArray) -> FloatArray:
        """Fold ``terms`` (one row per term, one column per point, oldest first) in;
        returns the new weighted sums."""
        n = terms.shape[1]
        weights = self.decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        self.sums = self.sums * self.decay**n + terms @ weights
        return self.sums


class RollingQuality:
    """Exponentially weighted quality over the points seen so far, in arrival order.

    A point ``halflife`` points older than the newest weighs half as much as the newest.
    """

    def __init__(self, halflife: float) -> None:
        # Weighted sums of: 1, |e|, |e_naive|, e^2, moved, hit.
        self._sums = DecayingSums(halflife, terms=6)

    def update(self, batch: ForecastBatch) -> Sums:
        """Score every model forecast the ticks of ``batch`` settle."""
        return self.add(batch.ticks.price, batch.previous_price, batch.previous_forecast)

    def add(
        self, price: FloatArray, previous_price: FloatArray, previous_forecast: FloatArray
    ) -> Sums:
        """Score points given as arrays (rows with ``previous_forecast <= 0`` are skipped)."""
        scored = previous_forecast > 0
        price, before, forecast = price[scored], previous_price[scored], previous_forecast[scored]
        error = (forecast - price) / before
        naive_error = (before - price) / before
        moved = price != before
        hit = moved & (np.sign(forecast - before) == np.sign(price - before))
        terms = np.stack(
            [np.ones_like(error), np.abs(error), np.abs(naive_error), error**2, moved, hit]
        )
        self._sums.add(terms)
        n = terms.shape[1]
        _, abs_error, naive_abs_error, squared_error, moves, hits = terms.sum(axis=1).tolist()
        return Sums(n, abs_error, naive_abs_error, squared_error, int(moves), int(hits))

    def get(self) -> Quality:
        weight, abs_error, naive_abs_error, squared_error, moves, hits = self._sums.sums.tolist()
        return Quality(
            mae=_ratio(abs_error, weight),
            rmse=math.sqrt(_ratio(squared_error, weight)),
            mase=_ratio(abs_error, naive_abs_error),
            directional_accuracy=_ratio(hits, moves),
        )


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan
