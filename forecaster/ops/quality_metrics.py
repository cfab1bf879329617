"""Forecast quality as Prometheus metrics: the figures of ``ops.quality`` over all series,
and per series for a few named ones.

>>> from prometheus_client import CollectorRegistry
>>> registry = CollectorRegistry()
>>> quality = QualityMetrics(registry, halflife=100.0, series=["AAPL"])
>>> registry.get_sample_value("forecaster_series_quality_mae_ratio", {"series": "AAPL"})
nan
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields

from prometheus_client import CollectorRegistry, Counter, Gauge

from forecaster.config import MAX_LABELLED_SERIES
from forecaster.core.engine import ForecastBatch
from forecaster.errors import ConfigError
from forecaster.ops.collectors import nan_gauge, rows_by_name
from forecaster.ops.quality import Quality, RollingQuality, Sums

_SUM_HELP = {
    "points": "Model forecasts scored against the price that followed them",
    "abs_error": "Sum of |forecast - price| / previous price over scored forecasts",
    "naive_abs_error": "Sum of |previous price - price| / previous price over scored forecasts",
    "squared_error": "Sum of ((forecast - price) / previous price)^2 over scored forecasts",
    "price_moves": "Scored forecasts after which the price moved",
    "direction_hits": "Scored forecasts that called the direction of a price move right",
}
_QUALITY_HELP = {
    "mae": "Rolling mean absolute error of model forecasts, relative to the previous price",
    "rmse": "Rolling root mean squared error of model forecasts, relative to the previous price",
    "mase": "Rolling model MAE over naive MAE on the same ticks (< 1: better than naive)",
    "directional_accuracy": "Rolling share of price moves whose direction the model called",
}


class QualityMetrics:
    """Online forecast quality over all series, and per series for a few named ones.

    Plain sums go to counters (``forecaster_quality_*_total``) for PromQL windows; the
    rolling figures of ``RollingQuality`` go to ``forecaster_quality_*_ratio`` gauges, and
    for each of ``series`` (at most MAX_LABELLED_SERIES) to ``forecaster_series_quality_*``.
    """

    def __init__(self, registry: CollectorRegistry, halflife: float, series: Sequence[str]) -> None:
        if len(series) > MAX_LABELLED_SERIES:
            raise ConfigError(
                f"at most {MAX_LABELLED_SERIES} series may carry quality labels, got {len(series)}"
            )
        self.rolling = RollingQuality(halflife)
        self.by_series = {name: RollingQuality(halflife) for name in series}
        self.sums = {
            f.name: Counter(f"forecaster_quality_{f.name}", _SUM_HELP[f.name], registry=registry)
            for f in fields(Sums)
        }
        self.gauges = {
            name: nan_gauge(f"forecaster_quality_{name}_ratio", text, registry)
            for name, text in _QUALITY_HELP.items()
        }
        self.series_gauges = {
            name: Gauge(
                f"forecaster_series_quality_{name}_ratio", text, ["series"], registry=registry
            )
            for name, text in _QUALITY_HELP.items()
        }
        for name in series:
            for gauge in self.series_gauges.values():
                gauge.labels(name).set(math.nan)

    def observe(self, batch: ForecastBatch) -> None:
        """Score the forecasts the prices of ``batch`` settle; update counters and gauges."""
        sums = self.rolling.update(batch)
        for f in fields(Sums):
            self.sums[f.name].inc(getattr(sums, f.name))
        self._show(self.rolling.get(), self.gauges)
        if self.by_series:
            self._observe_named_series(batch)

    def _observe_named_series(self, batch: ForecastBatch) -> None:
        for name, index in rows_by_name(batch.ticks.series, self.by_series).items():
            rolling = self.by_series[name]
            rolling.add(
                batch.ticks.price[index],
                batch.previous_price[index],
                batch.previous_forecast[index],
            )
            self._show(rolling.get(), {k: g.labels(name) for k, g in self.series_gauges.items()})

    @staticmethod
    def _show(quality: Quality, gauges: dict[str, Gauge]) -> None:
        for name, gauge in gauges.items():
            gauge.set(getattr(quality, name))
