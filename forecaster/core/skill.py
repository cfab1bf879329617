"""Per-series trust: each series' own linear head on the shared model, shrunk toward naive.

One model serves every series, and it cannot tell them apart: trained on the pool, it
predicts the pool's average structure, which is too little for a series with strong
structure (an AR(1) with phi = 0.5 among random walks) and only noise for a random walk.
So every series keeps, online and strictly causally, two small regressions of the
standardised return that followed each tick (the *outcome*):

1. its **head**: the ridge regression, exponentially forgetting (``HALFLIFE``), of the
   outcome on the tick's ``REGRESSORS``: the model's prediction and the model's own
   inputs (return, distance from the recent mean, time of day). It learns the series'
   structure (its phi, its intraday swing) and how far the model's prediction holds on
   it; ``HEAD_PRIOR`` shrinks every weight toward 0, the naive forecast.
2. its **trust**: ``gain = clip(sum(head * outcome) / (sum(head**2) + PRIOR), 0, MAX_GAIN)``
   over the head's past forecasts, each made before its outcome was known. A head that
   only fits noise (a random walk) has no record and earns a gain near 0, so the model
   is "never confidently wrong"; one that forecasts well earns a gain near 1.

The served prediction of the next standardised return is ``gain * head``.

A non-finite prediction is no forecast: the tick's outcome is still folded in, but the
tick leaves no regressors and no head forecast (0, as before a series' first one), and
serves 0. A record that would still take a non-finite value keeps its previous values,
so no input can make a series' record non-finite.

>>> from forecaster.core.features import model_inputs, new_stats
>>> stats, slot, ts = new_stats(1), np.array([0]), np.array([6 * 3_600_000_000_000])
>>> served = [calibrate(stats, slot, np.array([z]), np.array([0.0]),
...                     model_inputs(np.array([z]), np.array([0.0]), ts)) for z in (1.0, 0.5)]
>>> [float(s[0]) for s in served]  # no record yet: naive
[0.0, 0.0]
>>> inputs = model_inputs(np.array([0.3]), np.array([0.0]), ts)
>>> served = calibrate(stats, slot, np.array([0.3]), np.array([np.nan]), inputs)
>>> float(served[0]), float(stats["last_head"][0]), bool(np.isfinite(stats["head_gram"]).all())
(0.0, 0.0, True)
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from forecaster.core.compiled import all_finite, kernel, nan_clip
from forecaster.core.features import FEATURE_NAMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REGRESSORS = ("prediction", *FEATURE_NAMES)
HALFLIFE = 2000.0  # in ticks of the series: structure is a slow property
HEAD_PRIOR = 20.0  # ridge penalty of the head, in squared standardised returns
PRIOR = 1.0  # weight of the belief that a head without a record has no skill
MAX_GAIN = 1.0
_DECAY = 0.5 ** (1.0 / HALFLIFE)
_SIZE = len(REGRESSORS)  # a constant, so that the compiled loops over it are unrolled


@kernel
def calibrate(
    stats: npt.NDArray[np.void],
    slots: IntArray,
    z: FloatArray,
    prediction: FloatArray,
    inputs: npt.NDArray[np.float32],
) -> FloatArray:
    """Fold this tick's outcome ``z`` into each series' record; return the served predictions.

    ``stats`` is the series table's statistics array (updated in place at ``slots``, which
    are distinct); ``prediction`` is the model's raw prediction of the next standardised
    return, made from ``inputs``, this tick's model input rows
    (``forecaster.core.features.model_inputs``).
    """
    _check_rows(len(stats), slots, z, prediction, inputs)
    gram, low = np.empty((_SIZE, _SIZE)), np.empty((_SIZE, _SIZE))
    cross, regressors, weights = np.empty(_SIZE), np.empty(_SIZE), np.empty(_SIZE)
    served = np.zeros(len(slots))
    for n in range(len(slots)):
        row = stats[slots[n]]
        _fold_outcome(row, z[n], gram, cross)
        skill_cross = _DECAY * row["skill_cross"] + row["last_head"] * z[n]
        skill_power = _DECAY * row["skill_power"] + row["last_head"] * row["last_head"]
        _regressors(prediction[n], inputs[n], regressors)
        _ridge_solve(gram, cross, low, weights)
        head = _dot(regressors, weights)
        if not (
            all_finite(gram) and all_finite(cross) and all_finite(regressors)
            and math.isfinite(skill_cross) and math.isfinite(skill_power) and math.isfinite(head)
        ):  # fmt: skip
            row["head_inputs"][:] = 0.0  # the record keeps its values, without this forecast
            row["last_head"] = 0.0
            continue
        row["head_gram"][:, :] = gram
        row["head_cross"][:] = cross
        row["head_inputs"][:] = regressors
        row["skill_cross"] = skill_cross
        row["skill_power"] = skill_power
        row["last_head"] = head
        served[n] = _gain(skill_cross, skill_power) * head
    return served


@kernel
def _check_rows(
    table_rows: int,
    slots: IntArray,
    z: FloatArray,
    prediction: FloatArray,
    inputs: npt.NDArray[np.float32],
) -> None:
    """Raise before any row is written if the arguments do not describe the same rows of
    the table (compiled code does not check its indices)."""
    if not (len(z) == len(slots) and len(prediction) == len(slots) and len(inputs) == len(slots)):
        raise ValueError("calibrate: slots, z, prediction and inputs differ in length")
    if inputs.shape[1] != _SIZE - 1:
        raise ValueError("calibrate: inputs are not rows of the model's FEATURE_NAMES")
    for slot in slots:
        if not 0 <= slot < table_rows:
            raise IndexError("calibrate: a slot out of the table")


@kernel
def _fold_outcome(row: np.void, z: float, gram: FloatArray, cross: FloatArray) -> None:
    """The head's regression (``gram``, ``cross``) of ``row`` with the outcome ``z`` of its
    last regressors (zeros before the series' first head forecast) folded in."""
    head_gram, head_cross, previous = row["head_gram"], row["head_cross"], row["head_inputs"]
    for i in range(_SIZE):
        for j in range(_SIZE):
            gram[i, j] = _DECAY * head_gram[i, j] + previous[i] * previous[j]
        cross[i] = _DECAY * head_cross[i] + previous[i] * z


@kernel
def _regressors(prediction: float, inputs: npt.NDArray[np.float32], out: FloatArray) -> None:
    """The prediction and the inputs it was made from; all 0 if it is no forecast."""
    usable = math.isfinite(prediction)
    out[0] = prediction if usable else 0.0
    for i in range(_SIZE - 1):
        out[i + 1] = inputs[i] if usable else 0.0


@kernel
def _ridge_solve(gram: FloatArray, cross: FloatArray, low: FloatArray, out: FloatArray) -> None:
    """Solve ``(gram + HEAD_PRIOR I) out = cross`` by Cholesky: ``low`` is the factor,
    with the reciprocal of its diagonal on its diagonal (the only use of the diagonal)."""
    for j in range(_SIZE):
        for i in range(j, _SIZE):  # the diagonal first: the column below divides by it
            entry = gram[i, j] + (HEAD_PRIOR if i == j else 0.0)
            for m in range(j):
                entry -= low[i, m] * low[j, m]
            low[i, j] = entry * low[j, j] if i > j else 1.0 / np.sqrt(entry)
    for i in range(_SIZE):  # low y = cross
        entry = cross[i]
        for m in range(i):
            entry -= low[i, m] * out[m]
        out[i] = entry * low[i, i]
    for i in range(_SIZE - 1, -1, -1):  # low.T out = y, backwards
        entry = out[i]
        for m in range(i + 1, _SIZE):
            entry -= low[m, i] * out[m]
        out[i] = entry * low[i, i]


@kernel
def _dot(left: FloatArray, right: FloatArray) -> float:
    """``left · right``, summed as ``np.einsum`` sums it (in two SIMD lanes, the even terms
    and the odd ones), so that the compiled head and the vectorised one agree to the bit."""
    even, odd = 0.0, 0.0
    for i in range(0, _SIZE, 2):
        even += left[i] * right[i]
    for i in range(1, _SIZE, 2):
        odd += left[i] * right[i]
    return even + odd


@kernel
def _gain(skill_cross: float, skill_power: float) -> float:
    """The trust in a head of this record; nan if the record is (as ``np.clip``)."""
    return nan_clip(skill_cross / (skill_power + PRIOR), 0.0, MAX_GAIN)
