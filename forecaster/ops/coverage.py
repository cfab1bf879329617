"""Live interval coverage: each prediction interval scored when its series' next price
arrives, as Prometheus metrics.

A point is any forecast, model or naive, whose interval is settled by the batch's price
(``previous_lower > 0``). A *hit* is a price inside it. Counters hold the plain counts
(``forecaster_interval_points_total``, ``forecaster_interval_hits_total``) for PromQL
windows; gauges hold an exponentially weighted coverage and mean relative width (the
interval's width over the price it was issued at), over all series and for each labelled
series, next to the nominal coverage, so an alert can compare the two.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> coverage = IntervalMetrics(registry, nominal=0.9, halflife=100.0, series=["A"])
>>> coverage.rolling.add(np.array([10.0, 13.0]), np.array([10.0, 10.0]),
...                      np.array([9.0, 9.0]), np.array([11.0, 11.0]))
(2, 1)
>>> [round(figure, 3) for figure in coverage.rolling.get()]  # the newer point weighs more
[0.498, 0.2]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge

from forecaster.core.engine import ForecastBatch
from forecaster.ops.collectors import nan_gauge, rows_by_name
from forecaster.ops.quality import DecayingSums

FloatArray = npt.NDArray[np.float64]


class RollingCoverage:
    """Exponentially weighted coverage and relative width, ``halflife`` in points."""

    def __init__(self, halflife: float) -> None:
        self._sums = DecayingSums(halflife, terms=3)  # of: 1, hit, relative width

    def add(
        self, price: FloatArray, previous_price: FloatArray, lower: FloatArray, upper: FloatArray
    ) -> tuple[int, int]:
        """Score the intervals ``[lower, upper]`` (rows with ``lower <= 0`` are skipped);
        returns how many were scored and how many held the price."""
        scored = lower > 0
        price, lower, upper = price[scored], lower[scored], upper[scored]
        hit = (lower <= price) & (price <= upper)
        width = (upper - lower) / previous_price[scored]
        self._sums.add(np.stack([np.ones_like(width), hit, width]))
        return len(width), int(hit.sum())

    def get(self) -> tuple[float, float]:
        """Coverage and mean relative width; NaN before any point."""
        weight, hits, width = self._sums.sums.tolist()
        if weight <= 0:
            return math.nan, math.nan
        return hits / weight, width / weight


class IntervalMetrics:
    """Live coverage of the prediction intervals, over all series and per labelled one."""

    def __init__(
        self, registry: CollectorRegistry, nominal: float, halflife: float, series: Sequence[str]
    ) -> None:
        self.rolling = RollingCoverage(halflife)
        self.by_series = {name: RollingCoverage(halflife) for name in series}
        self.points = Counter(
            "forecaster_interval_points", "Prediction intervals settled by the next price",
            registry=registry,
        )  # fmt: skip
        self.hits = Counter(
            "forecaster_interval_hits", "Prediction intervals that held the next price",
            registry=registry,
        )  # fmt: skip
        self.nominal = Gauge(
            "forecaster_interval_nominal_coverage_ratio",
            "The coverage every prediction interval is calibrated to (interval_coverage)",
            registry=registry,
        )
        self.nominal.set(nominal)
        self.coverage = nan_gauge(
            "forecaster_interval_coverage_ratio",
            "Rolling share of prediction intervals that held the next price",
            registry,
        )
        self.width = nan_gauge(
            "forecaster_interval_width_ratio",
            "Rolling mean width of prediction intervals over the price they were issued at",
            registry,
        )
        labels = ["series"]
        self.series_coverage = Gauge(
            "forecaster_series_interval_coverage_ratio",
            "Rolling share of a series' prediction intervals that held its next price",
            labels, registry=registry,
        )  # fmt: skip
        self.series_width = Gauge(
            "forecaster_series_interval_width_ratio",
            "Rolling mean relative width of a series' prediction intervals",
            labels, registry=registry,
        )  # fmt: skip
        for name in series:
            self.series_coverage.labels(name).set(math.nan)
            self.series_width.labels(name).set(math.nan)

    def observe(self, batch: ForecastBatch) -> None:
        """Score the intervals the prices of ``batch`` settle; update counters and gauges."""
        points, hits = self.rolling.add(*_columns(batch, slice(None)))
        self.points.inc(points)
        self.hits.inc(hits)
        coverage, width = self.rolling.get()
        self.coverage.set(coverage)
        self.width.set(width)
        if self.by_series:
            self._observe_named_series(batch)

    def _observe_named_series(self, batch: ForecastBatch) -> None:
        for name, index in rows_by_name(batch.ticks.series, self.by_series).items():
            rolling = self.by_series[name]
            rolling.add(*_columns(batch, index))
            coverage, width = rolling.get()
            self.series_coverage.labels(name).set(coverage)
            self.series_width.labels(name).set(width)


def _columns(
    batch: ForecastBatch, rows: slice | list[int]
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    return (
        batch.ticks.price[rows],
        batch.previous_price[rows],
        batch.previous_lower[rows],
        batch.previous_upper[rows],
    )
