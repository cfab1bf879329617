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
>>> calibration, last_price = new_calibration(1), np.array([100.0])
>>> lower, upper = issue(params, calibration, np.array([101.0]), np.array([False]))
>>> bool(lower[0] < 101.0 < upper[0])
True
>>> previous = observe(params, calibration, last_price, np.array([100.5]), np.array([101.0]))
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
    last_price: FloatArray,
    price: FloatArray,
    previous_forecast: FloatArray,
) -> Previous:
    """Score the interval issued at each row's previous tick against ``price`` and fold it
    into the row's ``calibration`` (updated in place). ``last_price`` is the price then (0
    before any), ``previous_forecast`` the model's forecast then (0 if naive)."""
    seen = last_price > 0
    modelled = seen & (previous_forecast > 0)
    centre = np.where(modelled, previous_forecast, np.where(seen, last_price, price))
    naive, model = (_calibration(params, calibration, kind) for kind in KINDS)
    half = np.where(modelled, model.half, naive.half)
    lower, upper = centre * np.exp(-half), centre * np.exp(half)
    residual = np.log(price) - np.log(centre)
    naive_residual = np.where(seen, np.log(price) - np.log(np.where(seen, last_price, 1.0)), 0.0)
    _track(params, calibration, "model", issued=model, residual=residual, rows=modelled)
    _track(params, calibration, "naive", issued=naive, residual=naive_residual, rows=seen)
    hit = (lower <= price) & (price <= upper)
    return Previous(np.where(seen, lower, 0.0), np.where(seen, upper, 0.0), seen & hit)


def issue(
    params: IntervalParams,
    calibration: npt.NDArray[np.void],
    forecast: FloatArray,
    naive: BoolArray,
) -> tuple[FloatArray, FloatArray]:
    """The interval of each row's forecast, from the calibration of its kind."""
    if not naive.any():
        half = _calibration(params, calibration, "model").half
    elif naive.all():
        half = _calibration(params, calibration, "naive").half
    else:
        by_naive, by_model = (_calibration(params, calibration, kind) for kind in KINDS)
        half = np.where(naive, by_naive.half, by_model.half)
    return forecast * np.exp(-half), forecast * np.exp(half)


def new_calibration(n: int) -> npt.NDArray[np.void]:
    """The calibration of ``n`` new series: every threshold at ``q0``, every scale cold."""
    return np.zeros(n, CALIBRATION_DTYPE)


def restart_model(calibration: npt.NDArray[np.void]) -> None:
    """A new model serves: its calibration starts again from the naive one."""
    for name in FIELDS:
        calibration[f"model_{name}"] = calibration[f"naive_{name}"]


@dataclass(frozen=True)
class Calibration:
    """What a kind's intervals are issued with, per row: its scales (blended, long-run; the
    cold one where not ``known``), of shape (SCALES, rows), and the half-width, in log
    price, of the issuing expert."""

    sigma: FloatArray
    half: FloatArray
    known: BoolArray


def _calibration(
    params: IntervalParams, calibration: npt.NDArray[np.void], kind: str
) -> Calibration:
    """A model kind with fewer than MIN_RESIDUALS residuals takes the naive scales (and
    keeps its own thresholds)."""
    count = calibration[f"{kind}_count"]
    own = count >= MIN_RESIDUALS
    blended, long_run = _scale_sq(calibration, kind), calibration[f"{kind}_slow"]
    if kind == "model" and not own.all():
        blended = np.where(own, blended, _scale_sq(calibration, "naive"))
        long_run = np.where(own, long_run, calibration["naive_slow"])
        count = np.where(own, count, calibration["naive_count"])
    known = (count >= MIN_RESIDUALS) & (blended > 0) & (long_run > 0)
    sigma = np.where(known, np.sqrt(np.maximum([blended, long_run], MIN_SIGMA**2)), COLD_LOG_SIGMA)
    rows, best = np.arange(len(count)), calibration[f"{kind}_best"]
    q = np.clip(params.q0 + calibration[f"{kind}_shift"][rows, best], 0.0, MAX_Q)
    return Calibration(sigma, q * sigma[best // len(STEP_RATIOS), rows], known)


def _scale_sq(calibration: npt.NDArray[np.void], kind: str) -> FloatArray:
    fast, slow = calibration[f"{kind}_fast"], calibration[f"{kind}_slow"]
    var = calibration[f"{kind}_var"]
    weight = np.clip(np.divide(calibration[f"{kind}_cov"], var, out=np.full_like(var, 0.5),
                               where=var > 0), 0.0, 1.0)  # fmt: skip
    blended: FloatArray = weight * fast + (1.0 - weight) * slow
    return blended


def _track(
    params: IntervalParams,
    calibration: npt.NDArray[np.void],
    kind: str,
    *,
    issued: Calibration,
    residual: FloatArray,
    rows: BoolArray,
) -> None:
    """Fold ``residual`` into the ``kind`` calibration of ``rows``, scored against the
    scale ``issued`` with: the thresholds move only where that scale was known (a cold
    interval says nothing of the threshold)."""
    shift, loss = _by_expert(calibration[f"{kind}_shift"]), _by_expert(calibration[f"{kind}_loss"])
    sigma = issued.sigma[:, None, :]
    score = np.abs(residual) / sigma
    q = np.clip(params.q0 + shift, 0.0, MAX_Q)
    miss = score > q
    steps = params.step * STEP_RATIOS[:, None]
    moved = np.clip(shift + steps * (miss - params.alpha), -params.q0, MAX_Q)
    # in units of the blended scale, so that experts on either scale compare
    pinball = np.where(miss, 1.0 - params.alpha, -params.alpha) * (score - q) * (sigma / sigma[0])
    judged = loss + (1.0 - 0.5 ** (1.0 / LOSS_HALFLIFE)) * (pinball - loss)
    scored = rows & issued.known
    calibration[f"{kind}_shift"] = _by_row(_select(scored, moved, shift))
    judged = _by_row(_select(scored, judged, loss))
    calibration[f"{kind}_loss"] = judged
    calibration[f"{kind}_best"] = np.argmin(judged, axis=1)
    _fold_scale(params, calibration, kind, np.minimum(residual**2, 1.0), rows)


def _by_expert(field: FloatArray) -> FloatArray:
    """A per-expert field, (rows, INTERVAL_EXPERTS), as a contiguous (SCALES, steps, rows)
    array: every operation then runs along the rows."""
    return np.ascontiguousarray(field.T).reshape(SCALES, len(STEP_RATIOS), -1)


def _by_row(experts: FloatArray) -> FloatArray:
    return experts.reshape(SCALES * len(STEP_RATIOS), -1).T


def _fold_scale(
    params: IntervalParams,
    calibration: npt.NDArray[np.void],
    kind: str,
    squared: FloatArray,
    rows: BoolArray,
) -> None:
    """Take one squared residual (a log return of 100% at most) into the running means."""
    fast, slow = calibration[f"{kind}_fast"], calibration[f"{kind}_slow"]
    count = calibration[f"{kind}_count"]
    first = count <= 0
    lead, target = fast - slow, squared - slow
    regression = 1.0 - 0.5 ** (1.0 / REGRESSION_HALFLIFE)
    cov = calibration[f"{kind}_cov"] + regression * (lead * target - calibration[f"{kind}_cov"])
    var = calibration[f"{kind}_var"] + regression * (lead * lead - calibration[f"{kind}_var"])
    decay = 0.5 ** (1.0 / SLOW_HALFLIFE)
    seen = count + 1
    slow_step = (1.0 - decay) / (1.0 - decay**seen)  # the bias-corrected running mean
    updated = {
        "fast": _select(first, squared, fast + params.weight * (squared - fast)),
        "slow": _select(first, squared, slow + slow_step * (squared - slow)),
        "cov": _select(first, 0.0, cov),
        "var": _select(first, 0.0, var),
        "count": seen,
    }
    for name, values in updated.items():
        calibration[f"{kind}_{name}"] = _select(rows, values, calibration[f"{kind}_{name}"])


def _select(mask: BoolArray, where_true: Any, where_false: Any) -> Any:
    """``np.where``, without its work when ``mask`` is all one way (the usual case: every
    row of a batch seen before, scored, and not a series' first residual)."""
    if mask.all():
        return where_true
    if not mask.any():
        return where_false
    return np.where(mask, where_true, where_false)
