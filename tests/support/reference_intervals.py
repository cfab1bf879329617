"""The vectorised (NumPy) implementation of ``forecaster.core.intervals``' ``observe`` and
``issue``: the oracle the compiled one is proven equal to (tests/core/test_intervals.py).
Kept verbatim as it was before the per-row arithmetic was compiled."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.intervals import (
    COLD_LOG_SIGMA,
    KINDS,
    LOSS_HALFLIFE,
    MAX_Q,
    MIN_RESIDUALS,
    MIN_SIGMA,
    REGRESSION_HALFLIFE,
    SCALES,
    SLOW_HALFLIFE,
    STEP_RATIOS,
    BoolArray,
    FloatArray,
    IntervalParams,
    Previous,
)


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
