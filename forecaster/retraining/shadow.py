"""Shadow: a candidate that passed the holdout gate proves itself on the live stream
before it serves a single forecast.

With ``promotion = "shadow"`` (the default; ``"gate"`` promotes on the gate alone) the
engine steps the candidate beside the serving model (``forecaster.core.engine.shadow``)
and every forecast of it that the next price settles is paired with the serving model's
forecast of the same tick. A ``ShadowTrial`` gathers these paired absolute errors
(relative to the price forecast from, as live quality scores them) and, at a batch
boundary, decides:

- once ``min_points`` are scored: **promoted** if the candidate's live MASE is below
  ``(1 - margin)`` times the serving model's on the same ticks (``retrain_margin``) and a
  one-sided Diebold-Mariano test of the paired absolute errors
  (``forecaster.evaluation.scoring.diebold_mariano`` with a Newey-West variance, the
  series' errors being pooled in arrival order) says it is more accurate at
  ``significance``; otherwise **rejected**;
- after ``max_s`` seconds of tick time (the data's clock, as a replay has it) with fewer
  points: **rejected**, the figures it had recorded.

>>> trial = ShadowTrial("v2", ShadowPolicy(min_points=4, max_s=60), margin=0.0, started_ts=0)
>>> trial.verdict(newest_ts=10) is None  # nothing scored yet, time left
True
>>> trial.observe(PairedErrors(np.array([0.1] * 4), np.array([0.2] * 4), np.array([0.2] * 4)))
>>> verdict = trial.verdict(newest_ts=20)
>>> verdict.promote, verdict.points, verdict.candidate_mase, verdict.serving_mase
(True, 4, 0.5, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from forecaster.config import Settings
from forecaster.core.engine import PairedErrors
from forecaster.errors import ConfigError
from forecaster.evaluation.scoring import diebold_mariano, newey_west_lags
from forecaster.timestamps import NS_PER_S

PROMOTIONS = ("shadow", "gate")
LOSS = "absolute error"  # the loss the Diebold-Mariano test compares


@dataclass(frozen=True)
class ShadowPolicy:
    """How a candidate is promoted (``mode``: "shadow" or "gate") and, in shadow, how many
    scored forecasts decide, how long (seconds of tick time) it may take, at what level."""

    mode: str = Settings.promotion
    min_points: int = Settings.shadow_min_points
    max_s: float = Settings.shadow_max_s
    significance: float = Settings.shadow_significance

    def __post_init__(self) -> None:
        if self.mode not in PROMOTIONS:
            raise ConfigError(f"promotion must be one of {PROMOTIONS}, got {self.mode!r}")
        if self.min_points < 2 or self.max_s <= 0 or not 0 < self.significance < 1:
            raise ConfigError("shadow_min_points must be >= 2, shadow_max_s > 0 and "
                              "shadow_significance in (0, 1)")  # fmt: skip

    @property
    def on(self) -> bool:
        return self.mode == "shadow"


@dataclass(frozen=True)
class ShadowVerdict:
    """What a candidate's shadow came to, with the figures it was decided on; recorded in
    its registry metadata under ``shadow``."""

    promote: bool
    reason: str
    points: int
    candidate_mase: float
    serving_mase: float
    dm_statistic: float
    p_value: float
    seconds: float  # of tick time in shadow
    loss: str = LOSS

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: a figure that is not finite is None."""
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in asdict(self).items()}  # fmt: skip


class ShadowTrial:
    """The shadow of candidate ``version``, started at ``started_ts`` (epoch ns). It holds
    the paired errors it decides on: at most ``min_points`` and one batch, 24 bytes each."""

    def __init__(self, version: str, policy: ShadowPolicy, margin: float, started_ts: int) -> None:
        self.version = version
        self.policy = policy
        self.margin = margin
        self.started_ts = started_ts
        self._parts: list[PairedErrors] = []
        self.points = 0
        self._sums = np.zeros(3)  # candidate, serving, naive

    def observe(self, errors: PairedErrors) -> None:
        """Fold in the paired errors of newly settled forecasts."""
        if len(errors):
            self._parts.append(errors)
            self.points += len(errors)
            self._sums += [errors.candidate.sum(), errors.serving.sum(), errors.naive.sum()]

    def mase(self) -> tuple[float, float]:
        """The live MASE of the candidate and of the serving model on the ticks so far."""
        candidate, serving, naive = self._sums.tolist()
        return (candidate / naive, serving / naive) if naive > 0 else (math.nan, math.nan)

    def verdict(self, newest_ts: int) -> ShadowVerdict | None:
        """The verdict, once ``min_points`` are scored or ``max_s`` ran out; else None."""
        seconds = (newest_ts - self.started_ts) / NS_PER_S
        if self.points >= self.policy.min_points:
            return self._decide(self._figures(seconds))
        if seconds < self.policy.max_s:
            return None
        reason = f"only {self.points} of {self.policy.min_points} forecasts scored in " \
                 f"{self.policy.max_s:g} s"  # fmt: skip
        return replace(self._figures(seconds), reason=reason)

    def _decide(self, figures: ShadowVerdict) -> ShadowVerdict:
        candidate, serving = figures.candidate_mase, figures.serving_mase
        bar, level, p_value = 1.0 - self.margin, self.policy.significance, figures.p_value
        if not candidate < bar * serving:
            reason = f"live MASE {candidate:.4f} is not below {bar:g} x serving {serving:.4f}"
            return replace(figures, reason=reason)
        if not p_value < level:
            reason = (f"live MASE {candidate:.4f} against serving {serving:.4f} is not "
                      f"significant: p {p_value:.3g} >= {level:g}")  # fmt: skip
            return replace(figures, reason=reason)
        reason = (f"live MASE {candidate:.4f} beats serving {serving:.4f} by more than "
                  f"{self.margin:g}, p {p_value:.3g} < {level:g}")  # fmt: skip
        return replace(figures, promote=True, reason=reason)

    def _figures(self, seconds: float) -> ShadowVerdict:
        """The figures so far, with a rejection and no reason yet."""
        candidate, serving = self.mase()
        statistic = p_value = math.nan
        if self.points >= 2:
            errors = PairedErrors.join(self._parts)
            lags = newey_west_lags(self.points)
            statistic, _ = diebold_mariano(errors.candidate, errors.serving, lags)
            p_value = 0.5 * math.erfc(-statistic / math.sqrt(2.0))  # one-sided: it is better
        return ShadowVerdict(False, "", self.points, candidate, serving, statistic, p_value,
                             seconds)  # fmt: skip
