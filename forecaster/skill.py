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

>>> from forecaster.features import model_inputs, new_stats
>>> stats, slot, ts = new_stats(1), np.array([0]), np.array([6 * 3_600_000_000_000])
>>> served = [calibrate(stats, slot, np.array([z]), np.array([0.0]),
...                     model_inputs(np.array([z]), np.array([0.0]), ts)) for z in (1.0, 0.5)]
>>> [float(s[0]) for s in served]  # no record yet: naive
[0.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from forecaster.features import FEATURE_NAMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

REGRESSORS = ("prediction", *FEATURE_NAMES)
HALFLIFE = 2000.0  # in ticks of the series: structure is a slow property
HEAD_PRIOR = 20.0  # ridge penalty of the head, in squared standardised returns
PRIOR = 1.0  # weight of the belief that a head without a record has no skill
MAX_GAIN = 1.0
_DECAY = 0.5 ** (1.0 / HALFLIFE)
_IDENTITY = np.eye(len(REGRESSORS))


def calibrate(
    stats: npt.NDArray[np.void],
    slots: IntArray,
    z: FloatArray,
    prediction: FloatArray,
    inputs: npt.NDArray[np.float32],
) -> FloatArray:
    """Fold this tick's outcome ``z`` into each series' record; return the served predictions.

    ``stats`` is the series table's statistics array (updated in place at ``slots``);
    ``prediction`` is the model's raw prediction of the next standardised return, made
    from ``inputs``, this tick's model input rows (``forecaster.features.model_inputs``).
    """
    rows = stats[slots]
    previous = rows["head_inputs"]  # zeros before the series' first head forecast
    rows["head_gram"] = _DECAY * rows["head_gram"] + previous[:, :, None] * previous[:, None, :]
    rows["head_cross"] = _DECAY * rows["head_cross"] + previous * z[:, None]
    last_head = rows["last_head"]
    rows["skill_cross"] = _DECAY * rows["skill_cross"] + last_head * z
    rows["skill_power"] = _DECAY * rows["skill_power"] + last_head * last_head

    regressors = np.column_stack([prediction, inputs.astype(np.float64)])
    weights = np.linalg.solve(
        rows["head_gram"] + HEAD_PRIOR * _IDENTITY, rows["head_cross"][:, :, None]
    )[:, :, 0]
    head = np.einsum("ij,ij->i", regressors, weights)
    gain = np.clip(rows["skill_cross"] / (rows["skill_power"] + PRIOR), 0.0, MAX_GAIN)
    rows["head_inputs"] = regressors
    rows["last_head"] = head
    stats[slots] = rows
    served: FloatArray = gain * head
    return served
