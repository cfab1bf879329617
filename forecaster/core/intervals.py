r"""Prediction intervals: a central interval for the next price around every forecast,
calibrated online, per series and strictly causally.

The method is conformal quantile tracking (the quantile tracker of Angelopoulos, Candès
and Tibshirani's conformal PID control, 2023: adaptive conformal inference, Gibbs and
Candès 2021, run on the score's threshold instead of its level) on log residuals scaled
by each series' own volatility. Per series and per kind of forecast (the model's, and
naive: the last price), with ``alpha = 1 - coverage``:

- a forecast ``f`` issued at tick t carries ``[f exp(-q s), f exp(q s)]``, ``q`` a
  threshold of the kind's and ``s`` a scale of its residuals;
- once the next price ``p`` is known, the forecast's score is ``|log p - log f| / s``,
  a miss of a threshold ``q`` if above it; then ``q += step (miss - alpha)``, and the
  scale takes the residual in.

Whatever the scores do, a tracker's miss rate after T scores is within ``(q_max + step)
/ (step T)`` of ``alpha`` (their Proposition 1). A large step adapts fast but makes the
threshold jitter, which costs width where nothing changes; a small one is steady but
slow. So each kind tracks thresholds at three steps (``step`` / 16, / 4 and ``step``) on
each of two scales, and issues with the one of these experts whose pinball loss,
averaged over about the last ``LOSS_HALFLIFE`` residuals, is lowest (Zaffran et al.
2022's aggregation of adaptive conformal experts, here choosing one). The long-run scale
is the running mean of squared residuals over ``SLOW_HALFLIFE`` ticks; the blended
scale ``s^2 = a fast + (1 - a) slow`` mixes in a fast one (half-life ``halflife`` ticks,
as RiskMetrics), ``a`` the running least-squares weight that best predicts the next
squared residual from the two (``REGRESSION_HALFLIFE``): where volatility clusters the
fast mean predicts and the blended experts win; where it does not, the long-run ones
are as steady as an all-history quantile. Naive errors are calibrated on every tick,
also while the model serves, so a series whose forecasts turn naive (cold, or a failed
model step) is not falsely confident; until a kind has ``MIN_RESIDUALS`` residuals its
intervals take the wide ``COLD_LOG_SIGMA`` as their scale.

A series' calibration is a row of its own (``CALIBRATION_DTYPE``: for each kind, the
``_fast``, ``_slow``, ``_cov``, ``_var``, ``_count`` and ``_best`` fields and, per
expert, ``_shift`` and ``_loss``), kept in the series table beside its statistics, so it
is checkpointed, restored and rolled back with them; apart from them, so that stepping
the features never copies it. A threshold is stored as its shift from ``q0``, the
Gaussian quantile, so a fresh (zeroed) row starts at ``q0``. A model swap starts the
model's calibration again from the naive one (``restart_model``).

>>> params = IntervalParams(coverage=0.9)
>>> calibration, slot, last_price = new_calibration(1), np.array([0]), np.array([100.0])
>>> lower, upper = issue(params, calibration, slot, np.array([101.0]), np.array([False]))
>>> bool(lower[0] < 101.0 < upper[0])
True
>>> previous = observe(params, calibration, slot, last_price, np.array([100.5]),
...                    np.array([101.0]))
>>> bool(previous.hit[0]), int(calibration["model_count"][0]), int(calibration["naive_count"][0])
(True, 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.core.compiled import kernel, nan_clip, nan_max, nan_min
from forecaster.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
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
# Which step's threshold a series issues with is judged on about this many scores: long
# enough that chance does not pick a jittery one, short enough to follow a regime change.
LOSS_HALFLIFE = 2000.0
# The experts, INTERVAL_EXPERTS of them: a threshold on each of SCALES scales (the
# blended one, then the long-run one) at each step of STEP_RATIOS (of ``step``).
SCALES = 2
STEP_RATIOS = np.array([1.0 / 16.0, 1.0 / 4.0, 1.0])
KINDS = ("naive", "model")
MOMENTS = ("fast", "slow", "cov", "var", "count")  # the running moments of a kind's residuals
FIELDS = (*MOMENTS, "shift", "loss", "best")
INTERVAL_EXPERTS = SCALES * len(STEP_RATIOS)
CALIBRATION_DTYPE = np.dtype(
    [
        field
        for kind in KINDS
        for field in (
            *[(f"{kind}_{name}", np.float64) for name in MOMENTS],
            (f"{kind}_shift", np.float32, (INTERVAL_EXPERTS,)),
            (f"{kind}_loss", np.float32, (INTERVAL_EXPERTS,)),
            (f"{kind}_best", np.int32),  # the expert of least loss: it issues
        )
    ]
)


@dataclass(frozen=True)
class IntervalParams:
    """Nominal coverage, the largest of the tracker's steps and the volatility half-life,
    in ticks."""

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

    @cached_property  # on the per-tick path
    def q0(self) -> float:
        """The Gaussian quantile of the nominal coverage: where every threshold starts."""
        return NormalDist().inv_cdf(1.0 - self.alpha / 2.0)

    @property
    def weight(self) -> float:
        """The weight of each new squared residual in the running mean."""
        return float(1.0 - 0.5 ** (1.0 / self.halflife))

    @cached_property  # on the per-tick path
    def constants(self) -> KernelParams:
        """What the kernels take of these params: q0, alpha, step, weight."""
        return self.q0, self.alpha, self.step, self.weight


@dataclass(frozen=True)
class Previous:
    """The intervals issued at each row's previous tick (0, 0 where none) and whether the
    price now known fell inside."""

    lower: FloatArray
    upper: FloatArray
    hit: BoolArray


def observe(
    params: IntervalParams,
    calibration: npt.NDArray[np.void],
    slots: IntArray,
    last_price: FloatArray,
    price: FloatArray,
    previous_forecast: FloatArray,
) -> Previous:
    """Score the interval issued at each row's previous tick against ``price`` and fold it
    into the calibration of the row's slot (distinct rows of ``calibration``, updated in
    place). ``last_price`` is the price then (0 before any), ``previous_forecast`` the
    model's forecast then (0 if naive)."""
    lower, upper, hit = _observe(calibration, slots, last_price, price, previous_forecast,
                                 params.constants)  # fmt: skip
    return Previous(lower, upper, hit)


def issue(
    params: IntervalParams,
    calibration: npt.NDArray[np.void],
    slots: IntArray,
    forecast: FloatArray,
    naive: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """The interval of each row's forecast, from the calibration of its slot, of its kind."""
    return _issue(calibration, slots, forecast, naive, params.q0)


def new_calibration(n: int) -> npt.NDArray[np.void]:
    """The calibration of ``n`` new series: every threshold at ``q0``, every scale cold."""
    return np.zeros(n, CALIBRATION_DTYPE)


def restart_model(calibration: npt.NDArray[np.void]) -> None:
    """A new model serves: its calibration starts again from the naive one."""
    for name in FIELDS:
        calibration[f"model_{name}"] = calibration[f"naive_{name}"]


# The kernels below work on one row at a time (``observe_row`` and ``issue_row`` also serve
# the engine's compiled rounds): ``row`` is a CALIBRATION_DTYPE record, whose
# fields Numba reads and writes in place. Numba needs a field's name in the code, so each
# kind has a thin accessor and a store; the arithmetic between them is shared.
Row = Any  # a CALIBRATION_DTYPE record
Moments = tuple[float, float, float, float, float]  # a kind's MOMENTS, in that order
# A kind's fields: the per-expert shifts and losses (views into the row), best, moments.
Kind = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], int, Moments]
Scales = tuple[float, float]  # blended, long-run: indexed by an expert's scale
Issued = tuple[float, Scales, bool]  # the issuing expert's half-width, the scales, known
KernelParams = tuple[float, float, float, float]  # q0, alpha, step, weight

_LOSS_STEP = 1.0 - 0.5 ** (1.0 / LOSS_HALFLIFE)
_REGRESSION_STEP = 1.0 - 0.5 ** (1.0 / REGRESSION_HALFLIFE)
_SLOW_DECAY = 0.5 ** (1.0 / SLOW_HALFLIFE)
_MIN_SIGMA_SQ = MIN_SIGMA**2
_STEPS = len(STEP_RATIOS)


@kernel
def _observe(
    calibration: npt.NDArray[np.void],
    slots: IntArray,
    last_price: FloatArray,
    price: FloatArray,
    previous_forecast: FloatArray,
    params: KernelParams,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    rows = len(price)
    if not (len(slots) == len(last_price) == rows == len(previous_forecast)):
        raise ValueError("observe: slots and prices differ in length")
    lower, upper, hit = np.zeros(rows), np.zeros(rows), np.zeros(rows, np.bool_)
    for i in range(rows):
        prices = last_price[i], price[i], previous_forecast[i]
        lower[i], upper[i], hit[i] = observe_row(calibration[slots[i]], prices, params)
    return lower, upper, hit


@kernel
def observe_row(
    row: Row, prices: tuple[float, float, float], params: KernelParams
) -> tuple[float, float, bool]:
    """``observe`` on one row: the interval issued before (0, 0 where not seen) and its hit."""
    last_price, price, previous_forecast = prices
    seen = last_price > 0
    modelled = seen and previous_forecast > 0
    centre = previous_forecast if modelled else last_price if seen else price
    naive, model = _naive(row), _model(row)
    by_naive, by_model = _issued(params[0], naive, naive), _issued(params[0], model, naive)
    half = by_model[0] if modelled else by_naive[0]
    lower, upper = centre * np.exp(-half), centre * np.exp(half)
    residual = np.log(price) - np.log(centre)
    naive_residual = np.log(price) - np.log(last_price) if seen else 0.0
    _store_model(row, _track(model, by_model, modelled, residual, params))
    _store_naive(row, _track(naive, by_naive, seen, naive_residual, params))
    if not seen:
        return 0.0, 0.0, False
    return lower, upper, lower <= price <= upper


@kernel
def _issue(
    calibration: npt.NDArray[np.void], slots: IntArray, forecast: FloatArray, naive: BoolArray,
    q0: float,
) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    if not (len(slots) == len(forecast) == len(naive)):
        raise ValueError("issue: slots, forecast and naive differ in length")
    lower, upper = np.empty(len(forecast)), np.empty(len(forecast))
    for i in range(len(forecast)):
        lower[i], upper[i] = issue_row(calibration[slots[i]], forecast[i], naive[i], q0)
    return lower, upper


@kernel
def issue_row(row: Row, forecast: float, naive: bool, q0: float) -> tuple[float, float]:
    """``issue`` on one row: the interval of its forecast."""
    by_naive = _naive(row)
    half = _issued(q0, by_naive if naive else _model(row), by_naive)[0]
    return forecast * np.exp(-half), forecast * np.exp(half)


@kernel
def _naive(row: Row) -> Kind:
    moments = row.naive_fast, row.naive_slow, row.naive_cov, row.naive_var, row.naive_count
    return row.naive_shift, row.naive_loss, row.naive_best, moments


@kernel
def _model(row: Row) -> Kind:
    moments = row.model_fast, row.model_slow, row.model_cov, row.model_var, row.model_count
    return row.model_shift, row.model_loss, row.model_best, moments


@kernel
def _store_naive(row: Row, tracked: tuple[int, Moments]) -> None:
    row.naive_best, moments = tracked
    row.naive_fast, row.naive_slow, row.naive_cov, row.naive_var, row.naive_count = moments


@kernel
def _store_model(row: Row, tracked: tuple[int, Moments]) -> None:
    row.model_best, moments = tracked
    row.model_fast, row.model_slow, row.model_cov, row.model_var, row.model_count = moments


@kernel
def _issued(q0: float, kind: Kind, naive: Kind) -> Issued:
    """What ``kind``'s intervals are issued with. A model kind with fewer than
    MIN_RESIDUALS residuals takes the naive scales (and keeps its own thresholds)."""
    shift, _, best, moments = kind
    if not moments[4] >= MIN_RESIDUALS:  # NaN included, as NumPy's where
        moments = naive[3]
    blended, long_run, count = _scale_sq(moments), moments[1], moments[4]
    scales = (COLD_LOG_SIGMA, COLD_LOG_SIGMA)
    known = count >= MIN_RESIDUALS and blended > 0 and long_run > 0
    if known:
        scales = (
            np.sqrt(nan_max(blended, _MIN_SIGMA_SQ)),
            np.sqrt(nan_max(long_run, _MIN_SIGMA_SQ)),
        )
    return _threshold(q0, shift[best]) * scales[best // _STEPS], scales, known


@kernel
def _scale_sq(moments: Moments) -> float:
    fast, slow, cov, var, _ = moments
    weight = nan_clip(cov / var if var > 0 else 0.5, 0.0, 1.0)
    return weight * fast + (1.0 - weight) * slow


@kernel
def _threshold(q0: float, shift: float) -> float:
    """An expert's threshold, in float32: NumPy adds ``q0`` to a float32 shift in float32."""
    return nan_clip(float(np.float32(q0) + np.float32(shift)), 0.0, MAX_Q)


@kernel
def _track(
    kind: Kind, issued: Issued, tracked: bool, residual: float, params: KernelParams
) -> tuple[int, Moments]:
    """Fold ``residual`` into ``kind`` if ``tracked``, scored against the scales it was
    ``issued`` with: the thresholds move only where that scale was known (a cold interval
    says nothing of the threshold). Its expert of least loss (whether tracked or not) and
    its moments."""
    shift, loss, _, moments = kind
    q0, alpha, step, weight = params
    _, scales, known = issued
    best, least = 0, np.inf
    for expert in range(INTERVAL_EXPERTS):
        judged = np.float64(loss[expert])
        if tracked and known:
            scale = scales[expert // _STEPS]
            score = np.abs(residual) / scale
            q = _threshold(q0, shift[expert])
            miss = score > q
            moved = shift[expert] + step * STEP_RATIOS[expert % _STEPS] * (miss - alpha)
            # in units of the blended scale, so that experts on either scale compare
            pinball = (1.0 - alpha if miss else -alpha) * (score - q) * (scale / scales[0])
            judged += _LOSS_STEP * (pinball - judged)
            shift[expert], loss[expert] = nan_clip(moved, -q0, MAX_Q), judged
        best, least = _argmin_step(expert, judged, best, least)
    if tracked:
        moments = _fold_scale(moments, nan_min(residual**2, 1.0), weight)
    return best, moments


@kernel
def _fold_scale(moments: Moments, squared: float, weight: float) -> Moments:
    """Take one squared residual (a log return of 100% at most) into the running means."""
    fast, slow, cov, var, count = moments
    if count <= 0:
        return squared, squared, 0.0, 0.0, count + 1
    lead, target = fast - slow, squared - slow
    seen = count + 1
    slow_step = (1.0 - _SLOW_DECAY) / (1.0 - _SLOW_DECAY**seen)  # the bias-corrected mean
    return (
        fast + weight * (squared - fast),
        slow + slow_step * (squared - slow),
        cov + _REGRESSION_STEP * (lead * target - cov),
        var + _REGRESSION_STEP * (lead * lead - var),
        seen,
    )


# np.argmin's semantics, where Python's differ: the first NaN wins.
@kernel
def _argmin_step(index: int, value: float, best: int, least: float) -> tuple[int, float]:
    """``np.argmin`` one value at a time, from (0, inf): the first least value's index and
    value, or the first NaN's."""
    if np.isnan(least) or not (value < least or np.isnan(value)):
        return best, least
    return index, value
