"""Decay: the serving model's live quality, and whether it has fallen far enough to retrain.

The serving model's forecasts are scored as their next prices arrive (model forecasts
only, errors relative to the price forecast from, as ``forecaster.ops.quality`` scores
them). Over the last ``window`` scored forecasts its MASE (its MAE over naive's on the
same ticks) is decayed when it rises above ``mase_limit`` (1.0: worse than naive), or
above ``(1 + margin)`` times the MASE the gate measured on the model's holdout. A decay
run is debounced on the data's own clock, at most one per ``cooldown_s`` of tick time,
so that a replay decides exactly as a live run does; a new model starts a new window.

>>> monitor = DecayMonitor(DecayPolicy(window=2, mase_limit=1.0, margin=0.1, cooldown_s=60))
>>> monitor.observe(np.array([10.0, 10.0]), np.array([9.9, 9.9]), np.array([10.2, 10.2]))
>>> round(monitor.mase(), 3), monitor.due(newest_ts=1), monitor.due(newest_ts=2)
(2.0, True, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.errors import ConfigError
from forecaster.timestamps import NS_PER_S

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class DecayPolicy:
    """How many scored forecasts make the live MASE, what it may reach, how often a decay
    run may start (seconds of tick time); ``window`` 0 switches the decay trigger off."""

    window: int = Settings.decay_window
    mase_limit: float = Settings.decay_mase
    margin: float = Settings.decay_margin
    cooldown_s: float = Settings.decay_cooldown_s

    def __post_init__(self) -> None:
        if self.window < 0 or self.mase_limit <= 0 or self.margin < 0 or self.cooldown_s < 0:
            raise ConfigError("decay_window, decay_margin, decay_cooldown_s must be >= 0 "
                              "and decay_mase > 0")  # fmt: skip


class DecayMonitor:
    """The serving model's MASE over its last ``policy.window`` scored forecasts."""

    def __init__(self, policy: DecayPolicy) -> None:
        self.policy = policy
        self._errors = np.zeros((2, policy.window))  # |model error|, |naive error|, a ring
        self._seen = 0
        self._holdout_mase: float | None = None
        self._last_fire_ns: int | None = None

    def restart(self, holdout_mase: float | None) -> None:
        """A new model serves: a new window, judged against its own holdout MASE."""
        self._errors[:] = 0.0
        self._seen = 0
        self._holdout_mase = holdout_mase

    def observe(
        self, price: FloatArray, previous_price: FloatArray, previous_forecast: FloatArray
    ) -> None:
        """Score the model forecasts these prices settle (``previous_forecast`` 0: naive)."""
        if not self.policy.window:
            return
        scored = (previous_forecast > 0) & (previous_price > 0)
        before, now = previous_price[scored], price[scored]
        model = np.abs(previous_forecast[scored] - now) / before
        naive = np.abs(before - now) / before
        cells = (self._seen + np.arange(len(model))) % self.policy.window
        self._errors[0, cells] = model
        self._errors[1, cells] = naive
        self._seen += len(model)

    def mase(self) -> float:
        """The live MASE over the window; NaN until the window is full."""
        if not self.policy.window or self._seen < self.policy.window:
            return math.nan
        model, naive = self._errors.sum(axis=1).tolist()
        return model / naive if naive > 0 else math.nan

    def due(self, newest_ts: int) -> bool:
        """Whether the serving model has decayed and a decay run may start now."""
        mase = self.mase()
        if math.isnan(mase) or not self._decayed(mase):
            return False
        cooldown_ns = round(self.policy.cooldown_s * NS_PER_S)
        if self._last_fire_ns is not None and newest_ts - self._last_fire_ns < cooldown_ns:
            return False
        self._last_fire_ns = newest_ts
        return True

    def _decayed(self, mase: float) -> bool:
        if mase > self.policy.mase_limit:
            return True
        holdout = self._holdout_mase
        return holdout is not None and mase > holdout * (1.0 + self.policy.margin)
