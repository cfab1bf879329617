"""What the engine makes of a batch: forecasts of the accepted ticks, and the rejects.

>>> from forecaster.core.ticks import parse_messages
>>> ticks = parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks
>>> price = ticks.price
>>> batch = ForecastBatch(ticks, price, np.ones(1, bool), "v1", price, price, price * 0.9,
...                       price * 1.1, price * 0.9, price * 1.1)
>>> batch.versions(), len(batch.take(np.arange(0))), len(ForecastBatch.empty())
(['naive'], 0, 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.ticks import RejectReason, TickColumns, empty_columns

NAIVE = "naive"

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class OrderReject:
    """A tick the engine refused: ``index`` into the batch's TickColumns."""

    index: int
    reason: RejectReason
    detail: str


@dataclass(slots=True)
class ForecastBatch:
    """Forecasts of one batch, in the batch's tick order.

    ``model_version`` made every row whose ``naive`` flag is False; the rest are naive.
    """

    ticks: TickColumns
    forecast: FloatArray
    naive: BoolArray
    model_version: str
    # The series' previous price and the model's forecast made at it (0 = none or naive),
    # so that the quality of that forecast can be scored now that the price is known.
    previous_price: FloatArray
    previous_forecast: FloatArray
    # The prediction interval of each forecast (forecaster.core.intervals), and the one
    # issued with the series' previous forecast (0, 0 where none), scored now.
    lower: FloatArray
    upper: FloatArray
    previous_lower: FloatArray
    previous_upper: FloatArray

    @classmethod
    def empty(cls) -> ForecastBatch:
        none = np.zeros(0)
        return cls(empty_columns(), none, np.zeros(0, bool), NAIVE, *([none] * 6))

    def __len__(self) -> int:
        return len(self.ticks)

    def take(self, rows: npt.NDArray[np.int64]) -> ForecastBatch:
        """The forecasts at ``rows``, in that order."""
        return ForecastBatch(
            self.ticks.take(rows),
            self.forecast[rows],
            self.naive[rows],
            self.model_version,
            self.previous_price[rows],
            self.previous_forecast[rows],
            self.lower[rows],
            self.upper[rows],
            self.previous_lower[rows],
            self.previous_upper[rows],
        )

    def versions(self) -> list[str]:
        return [NAIVE if naive else self.model_version for naive in self.naive.tolist()]


@dataclass(slots=True)
class EngineResult:
    forecasts: ForecastBatch
    rejects: list[OrderReject]
    nonfinite: int = 0  # forecasts that fell back to naive as the model's output was not finite
