"""Prediction intervals scored on the backtest's points, at several nominal coverages.

The rows: each backtested cell (the service's intervals around that model's forecasts:
the replay's own at the service's coverage, recomputed by ``service_intervals`` at the
others), the classical baselines of ``interval_baselines``, and the oracle's true
conditional interval when the oracle file gives the next log return's mean and sd. The
points are the point forecasts' scored points (``evaluate``), grouped the same way (per
kind and overall). Every figure but coverage is relative to the price forecast from, so
that kinds of any price level compare: mean width, the interval (Winkler) score and the
pinball losses of the two bounds (``forecaster.evaluation.scoring``). Each row that is
not a baseline is also tested against the best baseline (the lower mean score) on the
same points: the Diebold-Mariano statistic of the paired interval scores, with a
Newey-West variance (an interval's miss tells of its neighbours'), negative where the
row scores lower; beyond +-1.96 the difference is significant at 5%.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.intervals import IntervalParams
from forecaster.evaluation import scoring
from forecaster.evaluation.backtest.interval_baselines import INTERVAL_BASELINES, Bounds
from forecaster.evaluation.backtest.points import ORACLE, Points
from forecaster.evaluation.backtest.service_intervals import service_bounds
from forecaster.evaluation.synthetic import oracle_interval

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)  # nominal coverages scored besides the service's own


def level_key(level: float) -> str:
    """A nominal coverage as metrics.json names it.

    >>> [level_key(level) for level in LEVELS]
    ['0.5', '0.8', '0.9', '0.95', '0.99']
    """
    return f"{level:g}"


@dataclass(frozen=True)
class IntervalScores:
    """One row's intervals at one nominal coverage, on one set of points."""

    points: int
    coverage: float  # share of the next prices inside their interval
    width: float  # mean width, relative to the price forecast from
    interval_score: float  # mean Winkler score, relative to the price forecast from
    pinball_lower: float  # mean pinball loss of the lower bound, relative
    pinball_upper: float  # and of the upper bound
    versus_best_baseline: float | None = None  # Diebold-Mariano statistic; None: a baseline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IntervalEvaluation:
    """The intervals of every row at every level, and their scores per kind."""

    coverage: float  # the service's nominal coverage
    levels: tuple[float, ...]
    bounds: dict[str, Bounds]  # by row: lower and upper, of shape (levels, points)
    per_kind: dict[str, dict[float, dict[str, IntervalScores]]]  # kind, level, row

    @property
    def rows(self) -> list[str]:
        return list(self.bounds)

    def at(self, row: str, level: float) -> Bounds:
        """``row``'s lower and upper bounds at nominal coverage ``level``, one per point."""
        lower, upper = self.bounds[row]
        index = self.levels.index(level)
        return lower[index], upper[index]


def evaluate_intervals(
    points: Points,
    groups: dict[str, IntArray],
    new_models: dict[str, IntArray],
    params: IntervalParams,
) -> IntervalEvaluation:
    """Every row's intervals at ``LEVELS`` and at ``params.coverage``, scored on each group
    of points; ``new_models`` are, by cell, the points where a new model first forecast."""
    levels = tuple(sorted({*LEVELS, params.coverage}))
    bounds = {
        cell: _service(points, cell, new_models[cell], params, levels) for cell in points.forecasts
    }
    bounds |= _baselines(points, levels)
    oracle = _oracle(points, levels)
    if oracle is not None and _finite_on(oracle, groups):
        bounds[ORACLE] = oracle
    per_kind = {kind: _score_levels(points, rows, bounds, levels) for kind, rows in groups.items()}
    return IntervalEvaluation(params.coverage, levels, bounds, per_kind)


def _service(
    points: Points,
    cell: str,
    new_models: IntArray,
    params: IntervalParams,
    levels: Sequence[float],
) -> Bounds:
    """The cell's intervals at every level; at the service's own, the replay's."""
    lower, upper = service_bounds(points, cell, new_models, params, levels)
    if cell in points.bounds:
        own = levels.index(params.coverage)
        lower[own], upper[own] = points.bounds[cell]
    return lower, upper


def _baselines(points: Points, levels: Sequence[float]) -> dict[str, Bounds]:
    shape = (len(levels), len(points))
    out = {name: (np.full(shape, np.nan), np.full(shape, np.nan)) for name in INTERVAL_BASELINES}
    for rows in points.by_series().values():
        for name, baseline in INTERVAL_BASELINES.items():
            lower, upper = baseline(points.price[rows], levels)
            out[name][0][:, rows], out[name][1][:, rows] = lower, upper
    return out


def _oracle(points: Points, levels: Sequence[float]) -> Bounds | None:
    """The true conditional intervals, when the oracle file gives the log-return law."""
    if points.oracle_log is None:
        return None
    mean, sd = points.oracle_log
    bounds = [oracle_interval(points.price, mean, sd, level) for level in levels]
    return np.vstack([low for low, _ in bounds]), np.vstack([high for _, high in bounds])


def _score_levels(
    points: Points, rows: IntArray, bounds: dict[str, Bounds], levels: tuple[float, ...]
) -> dict[float, dict[str, IntervalScores]]:
    unit = points.price[rows]
    actual = points.actual[rows] / unit
    scores: dict[float, dict[str, IntervalScores]] = {}
    for index, level in enumerate(levels):
        relative = {row: (lower[index, rows] / unit, upper[index, rows] / unit)
                    for row, (lower, upper) in bounds.items()}  # fmt: skip
        per_point = {row: scoring.interval_scores(*pair, actual, 1.0 - level)
                     for row, pair in relative.items()}  # fmt: skip
        best = per_point[min(INTERVAL_BASELINES, key=lambda name: float(per_point[name].mean()))]
        scores[level] = {
            row: _scores(pair, actual, level,
                         None if row in INTERVAL_BASELINES else _versus(per_point[row], best))
            for row, pair in relative.items()
        }  # fmt: skip
    return scores


def _versus(point_scores: FloatArray, baseline: FloatArray) -> float:
    """The Diebold-Mariano statistic of ``point_scores`` against ``baseline``'s."""
    lags = scoring.newey_west_lags(len(point_scores))
    return scoring.diebold_mariano(point_scores, baseline, lags)[0]


def _scores(
    bounds: Bounds, actual: FloatArray, level: float, versus: float | None
) -> IntervalScores:
    lower, upper = bounds
    alpha = 1.0 - level
    below, above = scoring.pinball_losses(lower, upper, actual, alpha)
    return IntervalScores(
        points=len(actual),
        coverage=scoring.coverage(lower, upper, actual),
        width=scoring.mean_width(lower, upper),
        interval_score=scoring.interval_score(lower, upper, actual, alpha),
        pinball_lower=below,
        pinball_upper=above,
        versus_best_baseline=versus,
    )


def _finite_on(bounds: Bounds, groups: dict[str, IntArray]) -> bool:
    """Whether ``bounds`` are known on every point of ``groups`` (at every level)."""
    return all(np.isfinite(bound[:, rows]).all() for bound in bounds for rows in groups.values())
