"""Forecast scores: of point forecasts, shared by the retraining gate and the backtest, and
of central prediction intervals, for the backtest.

Every function takes aligned arrays of forecasts (or interval bounds), the realised values
and (for the relative scores) the naive forecast made at the same points.

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

A central 50% interval (``alpha`` 0.5) that holds two of the three actual values:

>>> lower, upper = np.array([9.0, 10.0, 10.5]), np.array([11.0, 12.0, 11.5])
>>> float(coverage(lower, upper, actual)), float(mean_width(lower, upper))
(0.6666666666666666, 1.6666666666666667)
>>> round(interval_score(lower, upper, actual, alpha=0.5), 9)  # 5/3 + (2/0.5) * 0.5 / 3
2.333333333
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


def diebold_mariano(
    loss: FloatArray, reference_loss: FloatArray, lags: int = 0
) -> tuple[float, float]:
    """Diebold-Mariano test of equal one-step accuracy: (statistic, two-sided p-value).

    ``loss`` and ``reference_loss`` are per-point losses (e.g. absolute errors) of two
    forecasts on the same points, in order. The statistic is the mean loss difference
    over its standard error; negative means ``loss`` is lower. One-step forecast errors
    are serially uncorrelated under the null, so by default no autocovariance terms are
    added; ``lags`` > 0 adds that many, Bartlett-weighted (the Newey-West long-run
    variance, ``long_run_variance``), for differences that may be autocorrelated (e.g.
    many series' errors pooled in arrival order). Under equal accuracy the statistic is
    asymptotically standard normal: the one-sided p-value of "``loss`` is lower" is
    ``erfc(-statistic / sqrt(2)) / 2``.

    >>> rng = np.random.default_rng(0)
    >>> same = rng.normal(size=1000)
    >>> stat, p_value = diebold_mariano(np.abs(same), np.abs(same + rng.normal(size=1000)))
    >>> stat < -10, p_value < 1e-6
    (True, True)
    """
    difference = loss - reference_loss
    if difference.size < 2:
        return float("nan"), float("nan")
    variance = long_run_variance(difference, lags)
    mean = float(np.mean(difference))
    if variance <= 0.0:
        return (0.0, 1.0) if mean == 0.0 else (math.copysign(math.inf, mean), 0.0)
    stat = mean / math.sqrt(variance / difference.size)
    return stat, math.erfc(abs(stat) / math.sqrt(2.0))


def long_run_variance(difference: FloatArray, lags: int) -> float:
    """The sample variance of ``difference`` plus its first ``lags`` autocovariances,
    Bartlett-weighted (Newey-West).

    >>> round(long_run_variance(np.array([1.0, 2.0, 3.0, 4.0]), lags=1), 6)  # 5/3 + 5/16
    1.979167
    """
    deviation = difference - difference.mean()
    n = difference.size
    variance = float(deviation @ deviation) / (n - 1)
    for lag in range(1, min(lags, n - 1) + 1):
        autocovariance = float(deviation[lag:] @ deviation[:-lag]) / n
        variance += 2.0 * (1.0 - lag / (lags + 1)) * autocovariance
    return variance


def newey_west_lags(points: int) -> int:
    """Newey-West's rule of thumb for the lags of the long-run variance of ``points``.

    >>> newey_west_lags(100), newey_west_lags(2000)
    (4, 7)
    """
    return int(4 * (points / 100) ** (2 / 9))


def coverage(lower: FloatArray, upper: FloatArray, actual: FloatArray) -> float:
    """Share of the actual values inside their interval, bounds included."""
    return float(np.mean((lower <= actual) & (actual <= upper)))


def mean_width(lower: FloatArray, upper: FloatArray) -> float:
    """Mean width of the intervals."""
    return float(np.mean(upper - lower))


def pinball_losses(
    lower: FloatArray, upper: FloatArray, actual: FloatArray, alpha: float
) -> tuple[float, float]:
    """Mean pinball (quantile) losses of the bounds of central ``1 - alpha`` intervals, as
    the ``alpha / 2`` and ``1 - alpha / 2`` quantiles of the actual values."""
    # Here, not at the top: the retraining gate imports this module into every service,
    # and scikit-learn's import is a second of its start-up.
    from sklearn.metrics import mean_pinball_loss

    return (
        float(mean_pinball_loss(actual, lower, alpha=alpha / 2.0)),
        float(mean_pinball_loss(actual, upper, alpha=1.0 - alpha / 2.0)),
    )


def interval_score(lower: FloatArray, upper: FloatArray, actual: FloatArray, alpha: float) -> float:
    """Mean interval (Winkler) score of central ``1 - alpha`` intervals: the width, plus
    ``2 / alpha`` times how far the actual value fell outside. Lower is better; a proper
    score, so no interval scores better in expectation than the true quantiles'.

    It is ``2 / alpha`` times the sum of the bounds' pinball losses (Gneiting and Raftery,
    2007), which is how it is computed here.
    """
    below, above = pinball_losses(lower, upper, actual, alpha)
    return 2.0 / alpha * (below + above)


def interval_scores(
    lower: FloatArray, upper: FloatArray, actual: FloatArray, alpha: float
) -> FloatArray:
    """The interval (Winkler) score of each interval: the width, plus ``2 / alpha`` times
    how far the actual value fell outside (their mean is ``interval_score``).

    >>> interval_scores(np.array([99.0, 99.0]), np.array([101.0, 101.0]),
    ...                 np.array([100.0, 102.0]), alpha=0.1).tolist()
    [2.0, 22.0]
    """
    outside = np.maximum(lower - actual, 0.0) + np.maximum(actual - upper, 0.0)
    scores: FloatArray = upper - lower + 2.0 / alpha * outside
    return scores
