"""The retraining gate: a candidate serves only if it beats the serving model and naive.

Each series' history window is split in time: the candidate is fitted on the head of every
series and scored on the tail (the holdout), which it never saw. Every model runs
over the whole sequence from a zero state, so by the holdout its state is warm, as
when serving. Scores are on the model's target, the next standardised return: the
naive forecast (next price = this price) predicts 0, and the error of a price forecast
relative to the price is this error times the series' return scale, so these MAE and
MASE weigh every series alike, whatever its volatility.

The candidate is promoted only if its MAE is below ``(1 - margin)`` times both the
naive MAE and the serving model's MAE (when one serves). The ``Verdict`` (figures and
decision) is recorded in the version's metadata, under ``validation``; what it leads to in
the serving instance is ``forecaster.retraining.promotion``. The holdout is not the
early-stopping split of the fit (``forecaster.model.training``), which is cut from the
head alone.

>>> z = np.array([1.0, -1.0] * 10)
>>> seqs = [Sequence(z, np.zeros(20), np.arange(20))]
>>> holdout = split_holdout(seqs, fraction=0.25)
>>> len(holdout.fit[0]), holdout.start.tolist()
(15, [15])
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from forecaster.core.features import model_inputs
from forecaster.errors import TrainingError
from forecaster.evaluation import scoring
from forecaster.model.stepper import Stepper
from forecaster.retraining.dataset import Sequence

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Holdout:
    """Per series: the head to fit on, the whole sequence to score, where the tail starts."""

    fit: list[Sequence]
    whole: list[Sequence]
    start: IntArray


@dataclass(frozen=True)
class Verdict:
    """The figures of one candidate on the holdout, and the gate's decision."""

    points: int
    candidate_mae: float
    naive_mae: float
    serving_mae: float | None
    candidate_mase: float
    serving_mase: float | None
    margin: float
    promote: bool
    reason: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def split_holdout(sequences: list[Sequence], fraction: float) -> Holdout:
    """Hold out the last ``fraction`` of each series' steps (at least one step each)."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    start = np.array([len(s) - max(1, round(len(s) * fraction)) for s in sequences], np.int64)
    fit = [
        Sequence(s.z[:begin], s.d[:begin], s.ts[:begin])
        for s, begin in zip(sequences, start.tolist(), strict=True)
    ]
    return Holdout(fit, sequences, start)


def judge(candidate: Stepper, serving: Stepper | None, holdout: Holdout, margin: float) -> Verdict:
    """Score the candidate, the serving model and naive on the holdout; decide.

    Raises TrainingError when the candidate's forecasts are not finite (a failure, not
    a rejection) or the holdout is empty.
    """
    actual, mask = _targets(holdout)
    if not mask.any():
        raise TrainingError("the holdout holds no step to score")
    target = actual[mask]
    naive = np.zeros_like(target)
    candidate_forecast = _predictions(candidate, holdout)[mask]
    if not np.isfinite(candidate_forecast).all():
        raise TrainingError(f"candidate {candidate.version} forecasts non-finite values")
    candidate_mae = scoring.mae(candidate_forecast, target)
    naive_mae = scoring.mae(naive, target)
    serving_mae = serving_mase = None
    if serving is not None:
        serving_forecast = _predictions(serving, holdout)[mask]
        serving_mae = scoring.mae(serving_forecast, target)
        serving_mase = scoring.mase(serving_forecast, naive, target)
    promote, reason = _decide(candidate_mae, naive_mae, serving_mae, margin)
    return Verdict(
        points=int(mask.sum()),
        candidate_mae=candidate_mae,
        naive_mae=naive_mae,
        serving_mae=serving_mae,
        candidate_mase=scoring.mase(candidate_forecast, naive, target),
        serving_mase=serving_mase,
        margin=margin,
        promote=promote,
        reason=reason,
    )


def _decide(
    candidate: float, naive: float, serving: float | None, margin: float
) -> tuple[bool, str]:
    bar = 1.0 - margin
    if not candidate < bar * naive:
        return False, f"MAE {candidate:.6g} is not below {bar:g} x naive MAE {naive:.6g}"
    if serving is not None and math.isfinite(serving) and not candidate < bar * serving:
        return False, f"MAE {candidate:.6g} is not below {bar:g} x serving MAE {serving:.6g}"
    if serving is None or not math.isfinite(serving):
        return True, f"MAE {candidate:.6g} beats naive MAE {naive:.6g} by more than {margin:g}"
    return True, (
        f"MAE {candidate:.6g} beats naive MAE {naive:.6g} and serving MAE {serving:.6g} "
        f"by more than {margin:g}"
    )


def _padded(sequences: list[Sequence]) -> tuple[FloatArray, FloatArray, IntArray, IntArray]:
    length = np.array([len(s) for s in sequences], np.int64)
    steps = int(length.max(initial=0))
    z, d = np.zeros((len(sequences), steps)), np.zeros((len(sequences), steps))
    ts = np.zeros((len(sequences), steps), np.int64)
    for row, s in enumerate(sequences):
        z[row, : len(s)], d[row, : len(s)], ts[row, : len(s)] = s.z, s.d, s.ts
    return z, d, ts, length


def _targets(holdout: Holdout) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """The next step's z at every step, and which steps predict a holdout step."""
    z, _, _, length = _padded(holdout.whole)
    actual = np.zeros_like(z)
    actual[:, :-1] = z[:, 1:]
    t = np.arange(z.shape[1])[None, :]
    mask = (t + 1 >= holdout.start[:, None]) & (t + 1 < length[:, None])
    return actual, mask


def _predictions(model: Stepper, holdout: Holdout) -> FloatArray:
    z, d, ts, length = _padded(holdout.whole)
    predictions, _ = model.run(model_inputs(z, d, ts), length)
    return predictions.astype(np.float64)
