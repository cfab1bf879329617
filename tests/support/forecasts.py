"""Forecast batches made by hand, for tests of what consumes them (encodings, sinks)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import ForecastBatch
from forecaster.core.ticks import TickColumns

WIDTH = 0.01  # each interval spans the forecast ± 1 %


def forecast_batch(
    ticks: TickColumns,
    forecast: npt.NDArray[np.float64],
    naive: npt.NDArray[np.bool_],
    version: str = "v1",
) -> ForecastBatch:
    """Forecasts of ``ticks`` with intervals of ± WIDTH, no previous forecasts."""
    none = np.zeros(len(forecast))
    with np.errstate(over="ignore"):  # a forecast near the float maximum: an infinite bound
        lower, upper = forecast * (1 - WIDTH), forecast * (1 + WIDTH)
    return ForecastBatch(ticks, forecast, naive, version, none, none, lower, upper, none, none)
