"""Point-forecast scores shared by the retraining gate and the backtest.

Every function takes aligned arrays of forecasts, the realised values and (for the
relative scores) the naive forecast made at the same points.

>>> actual = np.array([10.0, 11.0, 10.0])
>>> naive = np.array([9.0, 10.0, 11.0])
>>> forecast = np.array([9.5, 10.5, 10.5])
>>> float(mae(forecast, actual)), float(mase(forecast, naive, actual))
(0.5, 0.5)
>>> float(directional_accuracy(forecast, naive, actual))
1.0
>>> stat, p_value = diebold_mariano(np.abs(forecast - actual), np.abs(naive - actual))
>>> round(stat, 3), round(p_value, 3)
(-inf, 0.0)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def mae(forecast: FloatArray, actual: FloatArray) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(forecast - actual)))


def rmse(forecast: FloatArray, actual: FloatArray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean(np.square(forecast - actual))))


def mase(forecast: FloatArray, naive: FloatArray, actual: FloatArray) -> float:
    """MAE over the naive forecast's MAE on the same points: < 1 beats naive."""
    return mae(forecast, actual) / mae(naive, actual)


def directional_accuracy(forecast: FloatArray, naive: FloatArray, actual: FloatArray) -> float:
    """Share of moves (actual != naive) whose direction the forecast called."""
    moved = actual != naive
    hits = np.sign(forecast[moved] - naive[moved]) == np.sign(actual[moved] - naive[moved])
    return float(np.mean(hits)) if hits.size else float("nan")


def diebold_mariano(loss: FloatArray, reference_loss: FloatArray) -> tuple[float, float]:
    """Diebold-Mariano test of equal one-step accuracy: (statistic, two-sided p-value).

    ``loss`` and ``reference_loss`` are per-point losses (e.g. absolute errors) of two
    forecasts on the same points. The statistic is the mean loss difference over its
    standard error; negative means ``loss`` is lower. One-step forecast errors are
    serially uncorrelated under the null, so no autocovariance terms are added.

    >>> rng = np.random.default_rng(0)
    >>> same = rng.normal(size=1000)
    >>> stat, p_value = diebold_mariano(np.abs(same), np.abs(same + rng.normal(size=1000)))
    >>> stat < -10, p_value < 1e-6
    (True, True)
    """
    difference = loss - reference_loss
    if difference.size < 2:
        return float("nan"), float("nan")
    spread = float(np.std(difference, ddof=1))
    mean = float(np.mean(difference))
    if spread == 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    stat = mean / (spread / math.sqrt(difference.size))
    return stat, math.erfc(abs(stat) / math.sqrt(2.0))
