"""The Diebold-Mariano test: is one forecast more accurate than another on the same points?

Given the losses of forecasts A and B of the same points, in order, the loss differential
``d = loss_a - loss_b`` has mean 0 when they are equally accurate. The statistic is
``DM = mean(d) / sqrt(lrv / n)``, where ``lrv`` is the long-run variance of ``d``:
Newey-West, a Bartlett kernel over ``lags`` autocovariances (by default
``floor(4 * (n / 100) ** (2 / 9))``), so that autocorrelated losses do not make a
difference look surer than it is. Under equal accuracy DM is asymptotically standard
normal; ``p_value`` is the one-sided probability of a DM this low if A were no better
than B, ``Phi(DM) = erfc(-DM / sqrt(2)) / 2``.

>>> test = diebold_mariano(np.array([1.0, 2.0, 3.0, 4.0]), np.zeros(4), lags=1)
>>> test.statistic, round(test.p_value, 6)
(4.0, 0.999968)
>>> round(diebold_mariano(np.array([0.0, 1.0] * 50), np.ones(100)).p_value, 6)
0.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DieboldMariano:
    """The test of ``points`` paired losses: DM statistic (negative: A has the lower
    loss), the one-sided p-value of "A is more accurate", the lags of the variance."""

    points: int
    statistic: float
    p_value: float
    lags: int


def default_lags(points: int) -> int:
    """Newey-West's rule of thumb for the lags of the long-run variance.

    >>> default_lags(100), default_lags(2000)
    (4, 7)
    """
    return int(4 * (points / 100) ** (2 / 9))


def long_run_variance(d: FloatArray, lags: int) -> float:
    """The Newey-West (Bartlett kernel) long-run variance of the series ``d``.

    >>> long_run_variance(np.array([1.0, 2.0, 3.0, 4.0]), lags=1)
    1.5625
    """
    deviation = d - d.mean()
    n = len(d)
    variance = float(deviation @ deviation) / n
    for lag in range(1, min(lags, n - 1) + 1):
        autocovariance = float(deviation[lag:] @ deviation[:-lag]) / n
        variance += 2.0 * (1.0 - lag / (lags + 1)) * autocovariance
    return variance


def diebold_mariano(
    loss_a: FloatArray, loss_b: FloatArray, lags: int | None = None
) -> DieboldMariano:
    """Test whether forecast A (``loss_a``) is more accurate than B on the same points.

    ValueError if the losses differ in length or there are fewer than 2. Where the
    differential has no variance, DM is 0 (no difference), or infinite with the sign
    of the mean.
    """
    if len(loss_a) != len(loss_b) or len(loss_a) < 2:
        raise ValueError(f"need two equally long loss series of >= 2 points, got "
                         f"{len(loss_a)} and {len(loss_b)}")  # fmt: skip
    d = np.asarray(loss_a, np.float64) - np.asarray(loss_b, np.float64)
    n = len(d)
    lags = default_lags(n) if lags is None else lags
    mean = float(d.mean())
    variance = long_run_variance(d, lags)
    if variance > 0:
        statistic = mean / math.sqrt(variance / n)
    else:
        statistic = math.copysign(math.inf, mean) if mean else 0.0
    p_value = 0.5 * math.erfc(-statistic / math.sqrt(2.0))
    return DieboldMariano(n, statistic, p_value, lags)
