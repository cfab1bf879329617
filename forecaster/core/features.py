"""Per-series online features: what the model sees of a tick, computed causally.

The model never sees a price level. Each tick's log-return is standardised by the
series' running return scale (so a series at 0.07 and one at 4000 look alike), and
the distance of the log price from its recent mean is standardised the same way.
Time of day enters as a point on the unit circle.

The model's target at step t is the standardised return of step t+1, and a forecast
turns a predicted standardised return back into a price:
``forecast = price * exp(scale * prediction)``.

>>> params = FeatureParams(min_history=2)
>>> stats, slot = new_stats(1), np.array([0])
>>> for price in (100.0, 101.0, 100.5, 100.7):
...     step = advance(params, stats, slot, np.array([price]), np.array([0]))
>>> bool(step.warm[0]), int(stats["n_returns"][0])
(True, 3)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.config import Settings
from forecaster.core.compiled import kernel, nan_clip, nan_max
from forecaster.errors import ConfigError

FEATURE_NAMES = ("return_z", "level_z", "tod_sin", "tod_cos")
NS_PER_DAY = 86_400 * 1_000_000_000
MIN_SCALE = 1e-12
N_REGRESSORS = 1 + len(
    FEATURE_NAMES
)  # forecaster.core.skill: the model's prediction and its inputs

STATS_DTYPE = np.dtype(
    [
        ("last_price", np.float64),  # 0 until the first tick
        ("last_ts", np.int64),
        ("n_returns", np.int64),
        ("scale_sq", np.float64),  # running mean of squared log-returns
        ("level", np.float64),  # running mean of the log price
        # the series' own linear head and its track record, kept by forecaster.core.skill
        ("head_gram", np.float64, (N_REGRESSORS, N_REGRESSORS)),
        ("head_cross", np.float64, (N_REGRESSORS,)),
        ("head_inputs", np.float64, (N_REGRESSORS,)),  # of the last tick; 0 before any
        ("skill_cross", np.float64),
        ("skill_power", np.float64),
        ("last_head", np.float64),  # the head's last forecast; 0 before any
    ]
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# What advance_row takes of FeatureParams: scale_alpha, level_alpha, level_spread (the
# level's standardiser), clip, min_history.
FeatureConstants = tuple[float, float, float, float, int]
StatsRecord = Any  # one STATS_DTYPE record, whose fields Numba reads and writes in place


@dataclass(frozen=True)
class FeatureParams:
    """How features are computed; a model is only valid with the params it was trained on."""

    min_history: int = Settings.min_history
    scale_halflife: float = Settings.scale_halflife
    level_halflife: float = Settings.level_halflife
    clip: float = 8.0

    def __post_init__(self) -> None:
        if self.min_history < 2:
            raise ConfigError(f"min_history must be >= 2, got {self.min_history}")
        if self.scale_halflife <= 0 or self.level_halflife <= 0:
            raise ConfigError("feature half-lives must be > 0")
        if self.clip <= 0:
            raise ConfigError(f"clip must be > 0, got {self.clip}")

    @property
    def scale_alpha(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / self.scale_halflife))

    @property
    def level_alpha(self) -> float:
        return float(1.0 - 0.5 ** (1.0 / self.level_halflife))

    @cached_property  # on the per-tick path
    def constants(self) -> FeatureConstants:
        """What ``advance_row`` takes of these params (``FeatureConstants``)."""
        return (self.scale_alpha, self.level_alpha, float(np.sqrt(self.level_halflife)),
                self.clip, self.min_history)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FeatureStep:
    """Features of one tick per row, after it was folded into the statistics."""

    z: FloatArray  # standardised log-return of this tick
    d: FloatArray  # standardised distance of the log price from its running mean
    scale: FloatArray  # return scale to de-standardise the next return's prediction
    warm: BoolArray  # enough history for the model to step

    @classmethod
    def empty(cls, rows: int) -> FeatureStep:
        return cls(np.empty(rows), np.empty(rows), np.empty(rows), np.empty(rows, bool))

    def take(self, rows: BoolArray) -> FeatureStep:
        return FeatureStep(self.z[rows], self.d[rows], self.scale[rows], self.warm[rows])


def new_stats(n: int) -> npt.NDArray[np.void]:
    return np.zeros(n, STATS_DTYPE)


def advance(
    params: FeatureParams,
    stats: npt.NDArray[np.void],
    slots: IntArray,
    price: FloatArray,
    ts: IntArray,
) -> FeatureStep:
    """Fold one tick per row into the statistics of ``slots`` (distinct rows of ``stats``,
    updated in place) and return its features.

    The return is standardised by the scale *before* this tick, so that the feature of
    step t+1 is exactly the target of step t.
    """
    step = FeatureStep.empty(len(price))
    _advance(stats, slots, price, ts, params.constants, step.z, step.d, step.scale, step.warm)
    return step


@kernel
def _advance(
    stats: npt.NDArray[np.void], slots: IntArray, price: FloatArray, ts: IntArray,
    constants: FeatureConstants, z: FloatArray, d: FloatArray, scale: FloatArray,
    warm: BoolArray,
) -> None:  # fmt: skip
    if not (len(slots) == len(price) == len(ts) == len(z)):
        raise ValueError("advance: slots, price and ts differ in length")
    for row in range(len(price)):
        z[row], d[row], scale[row], warm[row] = advance_row(stats[slots[row]], price[row],
                                                            ts[row], constants)  # fmt: skip


@kernel
def advance_row(
    series: StatsRecord, price: float, ts: int, constants: FeatureConstants
) -> tuple[float, float, float, bool]:
    """``advance`` of one tick: its series' STATS_DTYPE record (updated in place) and
    its features (z, d, scale, warm); the engine's compiled rounds call it."""
    scale_alpha, level_alpha, level_spread, clip, min_history = constants
    has_prev = series.last_price > 0
    log_price = np.log(price)
    ret = log_price - np.log(series.last_price) if has_prev else 0.0
    n_returns = series.n_returns + has_prev
    prev_scale = np.sqrt(nan_max(series.scale_sq, MIN_SCALE**2))
    z = nan_clip(ret / prev_scale, -clip, clip)

    # Early on the running means are plain averages, later exponential.
    scale_weight = max(scale_alpha, 1.0 / max(n_returns, 1))
    scale_sq = series.scale_sq + has_prev * scale_weight * (ret * ret - series.scale_sq)
    level_weight = max(level_alpha, 1.0 / (n_returns + 1))
    level = series.level + level_weight * (log_price - series.level) if has_prev else log_price
    scale = np.sqrt(nan_max(scale_sq, MIN_SCALE**2))
    d = nan_clip((log_price - level) / (scale * level_spread), -clip, clip)

    series.last_price = price
    series.last_ts = ts
    series.n_returns = n_returns
    series.scale_sq = scale_sq
    series.level = level
    return z, d, scale, n_returns >= min_history


def model_inputs(
    z: npt.NDArray[np.floating[Any]], d: npt.NDArray[np.floating[Any]], ts: IntArray
) -> npt.NDArray[np.float32]:
    """The model's input rows, in the order of FEATURE_NAMES (any leading shape)."""
    if z.ndim == 1:  # a round's steps (the per-tick path)
        inputs = np.empty((len(z), len(FEATURE_NAMES)), np.float32)
        _model_inputs(z, d, ts, inputs)
        return inputs
    inputs = np.empty((*np.shape(z), len(FEATURE_NAMES)), np.float32)
    flat = (np.ravel(z), np.ravel(d), np.ravel(ts))
    _model_inputs(*flat, inputs.reshape(-1, len(FEATURE_NAMES)))
    return inputs


@kernel
def _model_inputs(
    z: npt.NDArray[np.floating[Any]], d: npt.NDArray[np.floating[Any]], ts: IntArray,
    inputs: npt.NDArray[np.float32],
) -> None:  # fmt: skip
    for row in range(len(z)):
        angle = (2.0 * np.pi / NS_PER_DAY) * (ts[row] % NS_PER_DAY)
        inputs[row, 0], inputs[row, 1] = z[row], d[row]
        inputs[row, 2], inputs[row, 3] = np.sin(angle), np.cos(angle)
