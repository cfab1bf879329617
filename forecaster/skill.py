"""Per-series trust in the model: its prediction, shrunk toward naive by its track record.

One model serves every series, and on a series without structure (a random walk) any
non-zero prediction only adds error: a model that is "never confidently wrong" must
learn, per series, how far to trust itself. Each series keeps exponentially weighted
sums of ``prediction * outcome`` and ``prediction**2`` over the model's past predictions
of its next standardised return (the outcome being the standardised return that
followed), and the served prediction is ``gain * prediction`` with

    gain = clip(sum(prediction * outcome) / (sum(prediction**2) + PRIOR), 0, MAX_GAIN)

the ridge estimate of the regression of outcomes on predictions, shrunk toward 0 (the
naive forecast). Outcomes have unit variance, so ``PRIOR`` is the weight, in squared
standardised returns, of the prior belief that the model has no skill on a series it
has not yet been seen to forecast. Only pairs already realised enter: strictly causal.

>>> from forecaster.features import new_stats
>>> stats = new_stats(1)
>>> outcomes = [0.0, 0.8, 0.5, 0.9, 0.6, 0.7]  # the model keeps predicting 0.7, rightly
>>> gains = [calibrate(stats, np.array([0]), np.array([z]), np.array([0.7]))[0] / 0.7
...          for z in outcomes]
>>> [round(float(g), 2) for g in gains]
[0.0, 0.38, 0.46, 0.62, 0.66, 0.71]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SKILL_HALFLIFE = 2000.0  # in forecasts of the series: long, the gain is a slow property
PRIOR = 1.0
MAX_GAIN = 2.0
_DECAY = 0.5 ** (1.0 / SKILL_HALFLIFE)


def calibrate(
    stats: npt.NDArray[np.void], slots: IntArray, z: FloatArray, prediction: FloatArray
) -> FloatArray:
    """Fold this tick's outcome ``z`` into each series' record, return the shrunk predictions.

    ``stats`` is the series table's statistics array (updated in place at ``slots``);
    ``prediction`` is the model's raw prediction of the next standardised return.
    """
    rows = stats[slots]
    previous = rows["last_prediction"]
    decay = np.where(previous != 0.0, _DECAY, 1.0)
    rows["skill_cross"] = decay * rows["skill_cross"] + previous * z
    rows["skill_power"] = decay * rows["skill_power"] + previous * previous
    gain = np.clip(rows["skill_cross"] / (rows["skill_power"] + PRIOR), 0.0, MAX_GAIN)
    rows["last_prediction"] = prediction
    stats[slots] = rows
    shrunk: FloatArray = gain * prediction
    return shrunk
