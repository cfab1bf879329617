"""What the engine makes of a batch: forecasts of the accepted ticks, and the rejects.

>>> from forecaster.core.ticks import parse_messages
>>> ticks = parse_messages([b'{"series":"X","ts":1,"price":2.0}']).ticks
>>> batch = ForecastBatch(ticks, ticks.price, np.ones(1, bool), "v1", ticks.price, ticks.price)
>>> batch.versions()
['naive']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.ticks import RejectReason, TickColumns

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

    def __len__(self) -> int:
        return len(self.ticks)

    def versions(self) -> list[str]:
        return [NAIVE if naive else self.model_version for naive in self.naive.tolist()]


@dataclass(slots=True)
class EngineResult:
    forecasts: ForecastBatch
    rejects: list[OrderReject]
    nonfinite: int = 0  # forecasts that fell back to naive as the model's output was not finite
