"""RollingQuality against a direct recomputation, over any split into batches."""

import doctest
import itertools
import math
from dataclasses import astuple

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecaster.core.engine import Engine, EngineParams
from forecaster.core.features import FeatureParams
from forecaster.model.spec import ModelSpec
from forecaster.ops import quality
from forecaster.ops.quality import Quality, RollingQuality
from tests.support.models import random_stepper
from tests.support.ticks import random_ticks

FloatArray = npt.NDArray[np.float64]
PRICES = st.floats(0.01, 1000.0)
# (price, previous price, previous forecast); a forecast of 0 marks a naive one.
POINTS = st.lists(st.tuples(PRICES, PRICES, st.one_of(st.just(0.0), PRICES)), max_size=60)


def direct(points: list[tuple[float, float, float]], halflife: float) -> Quality:
    """The definition, point by point: weight 0.5 ** (age / halflife), age 0 for the newest."""
    scored = [(p, before, f) for p, before, f in points if f > 0]
    n = len(scored)
    weight: list[float] = [0.5 ** ((n - 1 - i) / halflife) for i in range(n)]
    error = [(f - p) / before for p, before, f in scored]
    naive = [(before - p) / before for p, before, f in scored]
    moved = [p != before for p, before, _ in scored]
    hit = [m and math.copysign(1, f - before) == math.copysign(1, p - before) and f != before
           for m, (p, before, f) in zip(moved, scored, strict=True)]  # fmt: skip

    def weighted(values: list[float]) -> float:
        return sum(w * v for w, v in zip(weight, values, strict=True))

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else math.nan

    return Quality(
        mae=ratio(weighted([abs(e) for e in error]), sum(weight)),
        rmse=math.sqrt(ratio(weighted([e * e for e in error]), sum(weight))),
        mase=ratio(weighted([abs(e) for e in error]), weighted([abs(e) for e in naive])),
        directional_accuracy=ratio(
            weighted(list(map(float, hit))), weighted(list(map(float, moved)))
        ),
    )


def arrays(points: list[tuple[float, float, float]]) -> tuple[FloatArray, FloatArray, FloatArray]:
    table = np.array(points, np.float64).reshape(-1, 3)
    return table[:, 0], table[:, 1], table[:, 2]


def assert_same(actual: Quality, expected: Quality) -> None:
    for name in ("mae", "rmse", "mase", "directional_accuracy"):
        a, e = getattr(actual, name), getattr(expected, name)
        assert (math.isnan(a) and math.isnan(e)) or a == pytest.approx(e, rel=1e-9, abs=1e-12), name


def test_docstring_examples() -> None:
    assert doctest.testmod(quality).failed == 0


@given(POINTS, st.lists(st.integers(0, 60), max_size=5), st.floats(0.5, 200.0))
def test_any_batching_equals_the_definition(
    points: list[tuple[float, float, float]], cuts: list[int], halflife: float
) -> None:
    rolling = RollingQuality(halflife)
    bounds = [0, *sorted(min(c, len(points)) for c in cuts), len(points)]
    for start, end in itertools.pairwise(bounds):
        rolling.add(*arrays(points[start:end]))
    assert_same(rolling.get(), direct(points, halflife))


@given(POINTS)
def test_sums_are_plain_sums_of_the_scored_points(points: list[tuple[float, float, float]]) -> None:
    sums = RollingQuality(10.0).add(*arrays(points))
    scored = [(p, before, f) for p, before, f in points if f > 0]
    assert sums.points == len(scored)
    assert sums.abs_error == pytest.approx(sum(abs(f - p) / b for p, b, f in scored))
    assert sums.naive_abs_error == pytest.approx(sum(abs(b - p) / b for p, b, f in scored))
    assert sums.price_moves == sum(p != b for p, b, _ in scored)


def test_a_point_halflife_points_old_weighs_half() -> None:
    rolling = RollingQuality(halflife=1.0)
    # Errors 0.1 then 0.4 (relative to 10): weights 0.5 and 1.
    rolling.add(np.array([9.0, 6.0]), np.array([10.0, 10.0]), np.array([10.0, 10.0]))
    assert rolling.get().mae == pytest.approx((0.5 * 0.1 + 0.4) / 1.5)


def test_nothing_scored_reads_nan() -> None:
    rolling = RollingQuality(100.0)
    rolling.add(np.array([1.0, 2.0]), np.array([1.5, 1.0]), np.zeros(2))
    assert all(math.isnan(v) for v in astuple(rolling.get()))


def test_halflife_must_be_positive() -> None:
    with pytest.raises(ValueError, match="halflife"):
        RollingQuality(0.0)


def test_update_scores_each_model_forecast_with_the_next_price_of_its_series() -> None:
    """Over engine batches, ``update`` scores exactly the model forecasts that got a successor."""
    engine = Engine(
        EngineParams(features=FeatureParams(min_history=5), ring_length=16),
        random_stepper(ModelSpec(layers=1, units=4)),
    )
    ticks = random_ticks(400, 5, seed=2)
    rolling = RollingQuality(1e9)  # ~equal weights: comparable with the plain mean
    forecasts, prices, series = [], [], []
    for start in range(0, 400, 45):
        batch = engine.process(ticks.take(np.arange(start, min(start + 45, 400)))).forecasts
        rolling.update(batch)
        forecasts += np.where(batch.naive, 0.0, batch.forecast).tolist()
        prices += batch.ticks.price.tolist()
        series += batch.ticks.series
    points = []
    for name in set(series):
        rows = [i for i, s in enumerate(series) if s == name]
        points += [(prices[b], prices[a], forecasts[a]) for a, b in itertools.pairwise(rows)]
    assert len([p for p in points if p[2] > 0]) > 100
    assert rolling.get().mae == pytest.approx(direct(points, 1e9).mae, rel=1e-6)
