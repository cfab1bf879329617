"""A stream whose structure only a model can serve, and models that know it or do not.

Each series' next standardised return is ``strength * (|z| - E|z|) / sd|z|`` of its last
one, plus noise: an even function of the last return, which the per-series linear head
(``forecaster.core.skill``) cannot learn from the return itself (it is uncorrelated with
it), but a recurrent model can compute (``even_stepper``). So on this stream a model
that knows the structure beats one that does not, after calibration, as shadow sees it.

``write_regime_ticks`` is a stream whose structure changes part-way, in two ways, with
its oracle: half the series move their autocorrelation from lag 2 to lag 3, the other
half gain it where there was none. The heads see only the last return, so only a model
retrained on the new regime serves it.
"""

from pathlib import Path

import numpy as np
import numpy.typing as npt

from forecaster.model.spec import ModelSpec
from forecaster.model.stepper import LayerWeights, Stepper

FloatArray = npt.NDArray[np.float64]
MEAN_ABS, SD_ABS = float(np.sqrt(2 / np.pi)), float(np.sqrt(1 - 2 / np.pi))
VOLATILITY = 0.002  # of the log-return per tick
SHIFT = 1.0  # of the two tanh units, which make an even function of z


def write_even_ticks(path: Path, series: int, ticks: int, strength: float, seed: int) -> None:
    """``series`` series of ``ticks`` ticks a second each, interleaved, as a tick CSV."""
    rng = np.random.default_rng(seed)
    prices = []
    for index in range(series):
        z = np.zeros(ticks)
        noise = rng.normal(0, np.sqrt(1 - strength**2), ticks)
        for t in range(1, ticks):
            z[t] = strength * (abs(z[t - 1]) - MEAN_ABS) / SD_ABS + noise[t]
        prices.append(50.0 * (index + 1) * np.exp(np.cumsum(VOLATILITY * z)))
    _write_interleaved(path, prices)


def write_regime_ticks(
    path: Path, *, series: int, ticks: int, change: int, strength: float, seed: int
) -> dict[str, FloatArray]:
    """``series`` series of ``ticks`` ticks a second each as a tick CSV, and each series'
    oracle: the true conditional mean of the next price after each tick but the last.

    Each standardised return is ``strength`` times the one ``lag`` ticks before plus
    noise (unit variance in all). Even series have lag 2 until tick ``change``, then
    lag 3; odd series are white noise until ``change``, then lag 3.
    """
    rng = np.random.default_rng(seed)
    prices, oracles = [], {}
    for index in range(series):
        lags = np.where(np.arange(ticks) < change, 2 if index % 2 == 0 else 0, 3)
        z, mean, variance = rng.normal(0, 1, ticks), np.zeros(ticks), np.ones(ticks)
        for t in range(ticks):
            lag = int(lags[t])
            if lag and t >= lag:
                mean[t], variance[t] = strength * z[t - lag], 1 - strength**2
                z[t] = mean[t] + np.sqrt(variance[t]) * z[t]
        price = 50.0 * (index + 1) * np.exp(np.cumsum(VOLATILITY * z))
        log_mean = VOLATILITY * mean[1:] + VOLATILITY**2 * variance[1:] / 2
        oracles[f"S{index}"] = price[:-1] * np.exp(log_mean)
        prices.append(price)
    _write_interleaved(path, prices)
    return oracles


def _write_interleaved(path: Path, prices: list[FloatArray]) -> None:
    """Series ``S0``, ``S1``, ... with these prices, a tick a second from 2026-01-01,
    interleaved in time, as a tick CSV."""
    rows = sorted((t, i, p) for i, price in enumerate(prices) for t, p in enumerate(price.tolist()))
    start_ms = 1_767_225_600_000  # 2026-01-01
    lines = [f"S{i},{start_ms + 1000 * t + i},{p!r}" for t, i, p in rows]
    path.write_text("series,ts,price\n" + "\n".join(lines) + "\n")


def even_stepper(strength: float, version: str) -> Stepper:
    """A GRU of two units whose prediction is close to ``strength * (|z| - E|z|) / sd|z|``
    of its input return z: each unit is tanh(+-z + SHIFT) (update gates shut), and the
    head is their least-squares fit to that function for z ~ N(0, 1)."""
    spec = ModelSpec(cell="gru", layers=1, units=2)
    kernel = np.zeros((spec.n_features, 6), np.float32)
    kernel[0, 4:] = [1.0, -1.0]  # the candidate activations' weights on the return
    bias = np.zeros((2, 6), np.float32)
    bias[0, :2] = -30.0  # update gates shut: each step's hidden state is its candidate
    bias[0, 4:] = SHIFT
    z = np.random.default_rng(0).normal(0, 1, 20_000)
    units = np.tanh(np.stack([z + SHIFT, -z + SHIFT], axis=1))
    design = np.column_stack([units.sum(axis=1), np.ones_like(z)])
    target = strength * (np.abs(z) - MEAN_ABS) / SD_ABS
    (weight, intercept), *_ = np.linalg.lstsq(design, target, rcond=None)
    layer = LayerWeights(kernel, np.zeros((2, 6), np.float32), bias)
    head = np.full((2, 1), weight, np.float32)
    return Stepper(spec, version, [layer], head, np.array([intercept], np.float32))
