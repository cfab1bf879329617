r"""Prediction intervals: a central interval for the next price around every forecast,
calibrated online, per series and strictly causally.

The method is conformal quantile tracking (the quantile tracker of Angelopoulos, Candès
and Tibshirani's conformal PID control, 2023: adaptive conformal inference, Gibbs and
Candès 2021, run on the score's threshold instead of its level) on log residuals scaled
by each series' own volatility. Per series and per kind of forecast (the model's, and
naive: the last price), with ``alpha = 1 - coverage``:

- a forecast ``f`` issued at tick t carries ``[f exp(-q s), f exp(q s)]``, ``q`` the kind's
  current threshold and ``s`` its residual scale;
- once the next price ``p`` is known, the forecast's score is ``|log p - log f| / s``,
  a miss if above ``q``; then ``q += step (miss - alpha)``, and the scale takes the
  residual in.

Whatever the scores do, a series' miss rate after T scores is within ``(q_max + step) /
(step T)`` of ``alpha`` (their Proposition 1), so coverage converges to nominal on every
series. The scale ``s^2 = a fast + (1 - a) slow`` blends a fast running mean of squared
residuals (half-life ``halflife`` ticks, as RiskMetrics) with the series' long-run one
(``SLOW_HALFLIFE``), ``a`` the running least-squares weight that best predicts the next
squared residual from the two (``REGRESSION_HALFLIFE``): where volatility clusters the
fast mean predicts and ``a`` grows; where it does not, the fast mean is noise and ``a``
falls, so the interval is as steady as an all-history quantile. Naive errors are
calibrated on every tick, also while the model serves, so a series whose forecasts turn
naive (cold, or a failed model step) is not falsely confident; until a kind has
``MIN_RESIDUALS`` residuals its intervals take the wide ``COLD_LOG_SIGMA`` as their scale.

The calibration lives in the series' statistics (``STATS_DTYPE``: for each kind, the
``_fast``, ``_slow``, ``_cov``, ``_var``, ``_count`` and ``_shift`` fields), so it is
checkpointed, restored and rolled back with them; ``q`` is stored as its shift from
``q0``, the Gaussian quantile, so a fresh (zeroed) row starts at ``q0``. A model swap
starts the model's calibration again from the naive one (``restart_model``).

>>> from forecaster.core.features import new_stats
>>> params = IntervalParams(coverage=0.9)
>>> stats = new_stats(1)
>>> stats["last_price"] = 100.0
>>> lower, upper = issue(params, stats, np.array([101.0]), np.array([False]))
>>> bool(lower[0] < 101.0 < upper[0])
True
>>> previous = observe(params, stats, np.array([100.5]), np.array([101.0]))
>>> bool(previous.hit[0]), int(stats["model_count"][0]), int(stats["naive_count"][0])
(True, 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# A series' intervals before it has MIN_RESIDUALS residuals of a kind: wide, since a
# scale estimated from a handful of returns can be far too small (a cold series must not
# be falsely confident).
COLD_LOG_SIGMA = 0.05
MIN_RESIDUALS = 16
MIN_SIGMA = 1e-12
MAX_Q = 50.0  # keeps every interval finite whatever the scores
# The long-run scale: about a trading day of ticks of a busy series; its running mean is
# bias-corrected, so before that many residuals it is their plain mean.
SLOW_HALFLIFE = 4096.0
REGRESSION_HALFLIFE = 1024.0  # the blend's weight: slower than the fast mean it judges
KINDS = ("naive", "model")
FIELDS = ("fast", "slow", "cov", "var", "count", "shift")


@dataclass(frozen=True)
class IntervalParams:
    """Nominal coverage, the tracker's step and the volatility half-life, in ticks."""

    coverage: float = Settings.interval_coverage
    step: float = Settings.interval_step
    halflife: float = Settings.interval_halflife

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage < 1.0:
            raise ConfigError(f"interval coverage must be in (0, 1), got {self.coverage}")
        if not self.step > 0.0 or not self.halflife > 0.0:
            raise ConfigError("interval step and half-life must be > 0")

    @property
    def alpha(self) -> float:
        return 1.0 - self.coverage

    @property
    def q0(self) -> float:
        """The Gaussian quantile of the nominal coverage: where every threshold starts."""
        return NormalDist().inv_cdf(1.0 - self.alpha / 2.0)

    @property
    def weight(self) -> float:
        """The weight of each new squared residual in the running mean."""
        return float(1.0 - 0.5 ** (1.0 / self.halflife))


@dataclass(frozen=True)
class Previous:
    """The intervals issued at each row's previous tick (0, 0 where none) and whether the
    price now known fell inside."""

    lower: FloatArray
    upper: FloatArray
    hit: BoolArray


def observe(
    params: IntervalParams,
    stats: npt.NDArray[np.void],
    price: FloatArray,
    previous_forecast: FloatArray,
) -> Previous:
    """Score the interval issued at each row's previous tick against ``price`` and fold it
    into the row's calibration (``stats`` updated in place; ``last_price`` still the
    previous price). ``previous_forecast`` is the model's forecast then, 0 if naive."""
    last = stats["last_price"]
    seen = last > 0
    modelled = seen & (previous_forecast > 0)
    centre = np.where(modelled, previous_forecast, np.where(seen, last, price))
    naive, model = _calibration(params, stats, "naive"), _calibration(params, stats, "model")
    half = np.where(modelled, model.q * model.sigma, naive.q * naive.sigma)
    lower, upper = centre * np.exp(-half), centre * np.exp(half)
    residual = np.log(price) - np.log(centre)
    naive_residual = np.where(seen, np.log(price) - np.log(np.where(seen, last, 1.0)), 0.0)
    _track(params, stats, "model", issued=model, residual=residual, rows=modelled)
    _track(params, stats, "naive", issued=naive, residual=naive_residual, rows=seen)
    hit = (lower <= price) & (price <= upper)
    return Previous(np.where(seen, lower, 0.0), np.where(seen, upper, 0.0), seen & hit)


def issue(
    params: IntervalParams, stats: npt.NDArray[np.void], forecast: FloatArray, naive: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """The interval of each row's forecast, from the calibration of its kind."""
    by_naive, by_model = _calibration(params, stats, "naive"), _calibration(params, stats, "model")
    half = np.where(naive, by_naive.q * by_naive.sigma, by_model.q * by_model.sigma)
    return forecast * np.exp(-half), forecast * np.exp(half)


def restart_model(stats: npt.NDArray[np.void]) -> None:
    """A new model serves: its calibration starts again from the naive one."""
    for name in FIELDS:
        stats[f"model_{name}"] = stats[f"naive_{name}"]


@dataclass(frozen=True)
class Calibration:
    """What a kind's interval is issued with, per row: its scale (the cold one where not
    ``known``) and its threshold."""

    sigma: FloatArray
    q: FloatArray
    known: BoolArray


def _calibration(params: IntervalParams, stats: npt.NDArray[np.void], kind: str) -> Calibration:
    """A model kind with fewer than MIN_RESIDUALS residuals takes the naive scale (and keeps
    its own threshold)."""
    count = stats[f"{kind}_count"]
    own = count >= MIN_RESIDUALS
    sq = _scale_sq(stats, kind)
    if kind == "model":
        sq = np.where(own, sq, _scale_sq(stats, "naive"))
        count = np.where(own, count, stats["naive_count"])
    known = (count >= MIN_RESIDUALS) & (sq > 0)
    sigma = np.where(known, np.sqrt(np.maximum(sq, MIN_SIGMA**2)), COLD_LOG_SIGMA)
    return Calibration(sigma, np.clip(params.q0 + stats[f"{kind}_shift"], 0.0, MAX_Q), known)


def _scale_sq(stats: npt.NDArray[np.void], kind: str) -> FloatArray:
    fast, slow = stats[f"{kind}_fast"], stats[f"{kind}_slow"]
    var = stats[f"{kind}_var"]
    weight = np.clip(np.divide(stats[f"{kind}_cov"], var, out=np.full_like(var, 0.5),
                               where=var > 0), 0.0, 1.0)  # fmt: skip
    blended: FloatArray = weight * fast + (1.0 - weight) * slow
    return blended


def _track(
    params: IntervalParams,
    stats: npt.NDArray[np.void],
    kind: str,
    *,
    issued: Calibration,
    residual: FloatArray,
    rows: BoolArray,
) -> None:
    """Fold ``residual`` into the ``kind`` calibration of ``rows``, scored against the
    interval ``issued`` with: the threshold moves only where its scale was known (a cold
    interval says nothing of the threshold)."""
    shift = stats[f"{kind}_shift"]
    miss = np.abs(residual) > issued.q * issued.sigma
    moved = np.clip(shift + params.step * (miss - params.alpha), -params.q0, MAX_Q)
    stats[f"{kind}_shift"] = np.where(rows & issued.known, moved, shift)
    _fold_scale(params, stats, kind, np.minimum(residual**2, 1.0), rows)


def _fold_scale(
    params: IntervalParams,
    stats: npt.NDArray[np.void],
    kind: str,
    squared: FloatArray,
    rows: BoolArray,
) -> None:
    """Take one squared residual (a log return of 100% at most) into the running means."""
    fast, slow = stats[f"{kind}_fast"], stats[f"{kind}_slow"]
    count = stats[f"{kind}_count"]
    first = count <= 0
    lead, target = fast - slow, squared - slow
    regression = 1.0 - 0.5 ** (1.0 / REGRESSION_HALFLIFE)
    cov = stats[f"{kind}_cov"] + regression * (lead * target - stats[f"{kind}_cov"])
    var = stats[f"{kind}_var"] + regression * (lead * lead - stats[f"{kind}_var"])
    decay = 0.5 ** (1.0 / SLOW_HALFLIFE)
    seen = count + 1
    slow_step = (1.0 - decay) / (1.0 - decay**seen)  # the bias-corrected running mean
    updated = {
        "fast": np.where(first, squared, fast + params.weight * (squared - fast)),
        "slow": np.where(first, squared, slow + slow_step * (squared - slow)),
        "cov": np.where(first, 0.0, cov),
        "var": np.where(first, 0.0, var),
        "count": seen,
    }
    for name, values in updated.items():
        stats[f"{kind}_{name}"] = np.where(rows, values, stats[f"{kind}_{name}"])
