"""Score every forecaster on the same points: per series, per process kind, and overall.

A point is scored when every backtested model (not the naive fallback) forecast it,
its series has a next price, and it lies after the series' tuning part: the ticks
before the model's first forecast of the series (at least ``MIN_TUNE``), on which the
baselines choose their smoothing constants. Per series, MAE and RMSE are in price
units; across series (kinds, overall) errors are relative to the price forecast from,
so series of any price level weigh alike. MASE is always the MAE over the naive
forecast's MAE on the same points, and the Diebold-Mariano test compares absolute
errors with the naive forecast's. A row whose absolute errors are significantly larger
than naive's (``SIGNIFICANCE``) is worse than naive however small the effect:
``worse_than_naive`` lists the models (cells) that are, per series and per kind.
Prediction intervals are scored on the same points, per kind and overall too
(``interval_evaluation``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from forecaster.core.engine import NAIVE
from forecaster.core.intervals import IntervalParams
from forecaster.evaluation import scoring
from forecaster.evaluation.backtest.baselines import BASELINES
from forecaster.evaluation.backtest.interval_evaluation import (
    IntervalEvaluation,
    evaluate_intervals,
)
from forecaster.evaluation.backtest.points import ORACLE, Points

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MIN_TUNE = 50
OVERALL = "all"
SIGNIFICANCE = 0.05  # two-sided Diebold-Mariano p-value


@dataclass(frozen=True)
class Scores:
    """One forecaster's figures on one set of points."""

    points: int
    mae: float
    rmse: float
    mase: float
    directional_accuracy: float  # moves called right over all moves; no call is a miss
    calls: float  # share of moves on which the forecast called a direction (left the price)
    call_hit_rate: float  # moves called right over moves called: 0.5 is a coin
    dm_stat: float  # Diebold-Mariano against naive, absolute errors; < 0 beats naive
    dm_pvalue: float

    @property
    def worse_than_naive(self) -> bool:
        """Absolute errors significantly larger than the naive forecast's."""
        return self.dm_stat > 0 and self.dm_pvalue < SIGNIFICANCE

    def to_dict(self) -> dict[str, Any]:
        figures = {key: _finite_or_none(value) for key, value in asdict(self).items()}
        return {**figures, "worse_than_naive": self.worse_than_naive}


@dataclass(frozen=True)
class Flag:
    """A model significantly worse than naive somewhere: a series or a kind."""

    scope: str  # "series" or "kind"
    name: str
    row: str
    scores: Scores

    def to_dict(self) -> dict[str, Any]:
        return {"scope": self.scope, "name": self.name, "row": self.row, **self.scores.to_dict()}


@dataclass(frozen=True)
class Evaluation:
    """Predictions of every row (cells, baselines, oracle) and their scores, and the same
    for prediction intervals."""

    points: Points
    predictions: dict[str, FloatArray]  # by row name, one value per point
    scored: BoolArray
    per_series: dict[str, dict[str, Scores]]
    per_kind: dict[str, dict[str, Scores]]  # by process kind, and OVERALL for every point
    retrains: dict[str, IntArray]  # by cell: points where a new model version took over
    intervals: IntervalEvaluation

    @property
    def rows(self) -> list[str]:
        return list(self.predictions)

    @property
    def cells(self) -> list[str]:
        return list(self.points.forecasts)

    def worse_than_naive(self) -> list[Flag]:
        """Every (series or kind, cell) where the cell is significantly worse than naive."""
        scopes = (("kind", self.per_kind), ("series", self.per_series))
        return [
            Flag(scope, name, cell, table[cell])
            for scope, tables in scopes
            for name, table in tables.items()
            for cell in self.cells
            if table[cell].worse_than_naive
        ]


def evaluate(points: Points, intervals: IntervalParams | None = None) -> Evaluation:
    """Run the baselines over every series, choose the scored points and score every row;
    the same for prediction intervals, the service's calibrated with ``intervals`` (its
    defaults unless given)."""
    tune = _tuning_lengths(points)
    predictions = {**points.forecasts, **_baseline_predictions(points, tune)}
    scored = points.model_made() & np.isfinite(points.actual) & (points.position >= tune)
    if points.oracle is not None and np.isfinite(points.oracle[scored]).all():
        predictions[ORACLE] = points.oracle
    per_series = {
        name: _score_rows(predictions, points, rows[scored[rows]], relative=False)
        for name, rows in points.by_series().items()
        if scored[rows].any()
    }
    groups = _groups(points, scored)
    per_kind = {
        kind: _score_rows(predictions, points, rows, relative=True) for kind, rows in groups.items()
    }
    retrains = {cell: retrain_points(versions) for cell, versions in points.versions.items()}
    interval_evaluation = evaluate_intervals(
        points, groups, retrains, intervals or IntervalParams()
    )
    return Evaluation(
        points, predictions, scored, per_series, per_kind, retrains, interval_evaluation
    )


def _groups(points: Points, scored: BoolArray) -> dict[str, IntArray]:
    """The scored points of every process kind, and OVERALL: all of them; none empty."""
    groups = {OVERALL: np.flatnonzero(scored)}
    if points.kind is not None:
        kinds = np.array(points.kind)
        groups |= {kind: np.flatnonzero(scored & (kinds == kind)) for kind in sorted(set(kinds))}
    return {kind: rows for kind, rows in groups.items() if len(rows)}


def retrain_points(versions: list[str]) -> IntArray:
    """Indices where a model version other than the last one serving first forecasts.

    >>> retrain_points(["naive", "m1", "naive", "m1", "m2", "m2"]).tolist()
    [1, 4]
    """
    events: list[int] = []
    serving = NAIVE
    for index, version in enumerate(versions):
        if version not in (NAIVE, serving):
            events.append(index)
            serving = version
    return np.array(events, np.int64)


def _tuning_lengths(points: Points) -> IntArray:
    """Per point, the length of its series' tuning part (ticks before the first model forecast)."""
    made = points.model_made()
    tune = np.zeros(len(points), np.int64)
    for rows in points.by_series().values():
        first = np.flatnonzero(made[rows])
        tune[rows] = max(MIN_TUNE, int(first[0]) if len(first) else len(rows))
    return tune


def _baseline_predictions(points: Points, tune: IntArray) -> dict[str, FloatArray]:
    out = {name: np.full(len(points), math.nan) for name in BASELINES}
    for rows in points.by_series().values():
        prices = points.price[rows]
        for name, baseline in BASELINES.items():
            out[name][rows] = baseline(prices, int(tune[rows[0]]))
    return out


def _score_rows(
    predictions: dict[str, FloatArray], points: Points, rows: IntArray, relative: bool
) -> dict[str, Scores]:
    unit = points.price[rows] if relative else np.ones(len(rows))
    actual = points.actual[rows] / unit
    naive = points.price[rows] / unit
    naive_loss = np.abs(naive - actual)
    scores = {}
    for name, prediction in predictions.items():
        forecast = prediction[rows] / unit
        stat, p_value = (
            scoring.diebold_mariano(np.abs(forecast - actual), naive_loss)
            if name != "naive"
            else (math.nan, math.nan)
        )
        accuracy = scoring.directional_accuracy(forecast, naive, actual)
        calls = _call_share(forecast, naive, actual)
        scores[name] = Scores(
            points=len(rows),
            mae=scoring.mae(forecast, actual),
            rmse=scoring.rmse(forecast, actual),
            mase=scoring.mase(forecast, naive, actual),
            directional_accuracy=accuracy,
            calls=calls,
            call_hit_rate=accuracy / calls if calls > 0 else math.nan,
            dm_stat=stat,
            dm_pvalue=p_value,
        )
    return scores


def _call_share(forecast: FloatArray, naive: FloatArray, actual: FloatArray) -> float:
    """Share of the moves (actual != naive) on which the forecast is not the last price."""
    moved = actual != naive
    return float(np.mean(forecast[moved] != naive[moved])) if moved.any() else math.nan


def _finite_or_none(value: float | int) -> float | int | None:
    return value if math.isfinite(value) else None
