"""The service's prediction intervals at any coverage, recomputed from a replay's forecasts.

An interval depends only on its series' past prices and forecasts (the model's or naive)
and on when new models began to serve, never on the intervals issued before. So running
``forecaster.core.intervals`` over a forecast file, calling it as the engine does, gives
the intervals the service would have issued at another coverage (the backtest's tests
check that it reproduces the replay's own). The engine restarts every series' model
calibration when it swaps models, between batches; here each series restarts at its
first tick from the first record a new version forecast on.

Series are stepped together, one round per tick position (the k-th tick of every
series), as the engine's rounds do: a pass over the sample data takes seconds.

>>> from forecaster.evaluation.backtest.points import Points
>>> price = np.array([100.0, 101.0, 100.5])
>>> points = Points(["A"] * 3, ["t0", "t1", "t2"], price, np.array([101.0, 100.5, np.nan]),
...                 np.arange(3), {"lstm": price}, {"lstm": ["naive"] * 3})
>>> lower, upper = service_bounds(points, "lstm", np.zeros(0, np.int64), IntervalParams(),
...                               (0.5, 0.9))
>>> bool((lower[1] < lower[0]).all() and (lower < price).all() and (upper > price).all())
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from forecaster.core import intervals
from forecaster.core.engine import NAIVE
from forecaster.core.intervals import IntervalParams
from forecaster.evaluation.backtest.points import Points

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Bounds = tuple[FloatArray, FloatArray]


def service_bounds(
    points: Points,
    cell: str,
    new_models: IntArray,
    params: IntervalParams,
    coverages: Sequence[float],
) -> Bounds:
    """Lower and upper bounds, of shape (coverages, points), of the intervals ``params``
    (at each coverage) give ``cell``'s forecasts; ``new_models`` are the points where a new
    model version first forecast (``evaluate.retrain_points``)."""
    naive = np.array([version == NAIVE for version in points.versions[cell]], bool)
    series = _series_ids(points)
    recorded = _Recorded(points.price, points.forecasts[cell], naive, series,
                         _restarts(points, new_models))  # fmt: skip
    rounds = _rounds(points.position)
    bounds = [recorded.bounds(replace(params, coverage=nominal), rounds) for nominal in coverages]
    return np.vstack([low for low, _ in bounds]), np.vstack([high for _, high in bounds])


@dataclass(frozen=True)
class _Recorded:
    """One cell's recorded ticks, in file order: what the calibration is stepped through."""

    price: FloatArray
    forecast: FloatArray
    naive: BoolArray
    series: IntArray  # a number per series
    restart: BoolArray  # the series' model calibration restarts before this tick

    def bounds(self, params: IntervalParams, rounds: list[IntArray]) -> Bounds:
        count = int(self.series.max()) + 1 if len(self.series) else 0
        calibration, last_price = intervals.new_calibration(count), np.zeros(count)
        previous = np.zeros(count)
        model_forecast = np.where(self.naive, 0.0, self.forecast)  # the engine keeps 0 if naive
        lower, upper = np.empty(len(self.price)), np.empty(len(self.price))
        for rows in rounds:
            ids, price = self.series[rows], self.price[rows]
            again = ids[self.restart[rows]]
            if len(again):
                restarted = calibration[again]
                intervals.restart_model(restarted)
                calibration[again] = restarted
            intervals.observe(params, calibration, ids, last_price[ids], price, previous[ids])
            lower[rows], upper[rows] = intervals.issue(
                params, calibration, ids, self.forecast[rows], self.naive[rows]
            )
            last_price[ids], previous[ids] = price, model_forecast[rows]
        return lower, upper


def _series_ids(points: Points) -> IntArray:
    ids = np.zeros(len(points), np.int64)
    for number, rows in enumerate(points.by_series().values()):
        ids[rows] = number
    return ids


def _restarts(points: Points, new_models: IntArray) -> BoolArray:
    """Per point, whether its series' model calibration restarts just before it: its first
    tick at or after each point where a new model first forecast."""
    restart = np.zeros(len(points), bool)
    for rows in points.by_series().values():
        after = np.searchsorted(rows, new_models)
        restart[rows[after[after < len(rows)]]] = True
    return restart


def _rounds(position: IntArray) -> list[IntArray]:
    """The points grouped by their position in their series, each group in file order."""
    order = np.argsort(position, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(position[order])) + 1)
