"""Prediction intervals: calibrated to nominal coverage, causal, always finite and ordered,
and carried with the series' state through a hand-off and a model swap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from forecaster.core.engine import Engine, EngineParams, ForecastBatch
from forecaster.core.features import FeatureParams
from forecaster.core.intervals import COLD_LOG_SIGMA, FIELDS, MIN_RESIDUALS, IntervalParams
from forecaster.core.ticks import TickColumns
from forecaster.model.spec import ModelSpec
from tests.support.models import random_stepper
from tests.support.ticks import columns

SERIES, STEPS = 20, 10_000


def heavy_tailed_stream(seed: int, series: int = SERIES, steps: int = STEPS) -> TickColumns:
    """Random walks whose returns jump between volatility regimes, half of the series with
    Student-t (3 degrees of freedom) returns, half with uniform ones: a Gaussian interval on
    a running scale misses its coverage on both, in opposite directions."""
    rng = np.random.default_rng(seed)
    regime = np.repeat(rng.choice([0.002, 0.01, 0.03], steps // 500 + 1), 500)[:steps]
    shocks = rng.standard_t(3, (steps, series)) / np.sqrt(3.0)
    half = series // 2
    shocks[:, half:] = rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), (steps, series - half))
    returns = shocks * regime[:, None]
    prices = 100.0 * np.exp(np.cumsum(returns, axis=0))
    names = [f"S{s:02d}" for s in range(series)] * steps
    ts = np.repeat(np.arange(1, steps + 1), series).tolist()
    return columns(names, ts, prices.ravel().tolist())


def engine_with(coverage: float, **changes: object) -> Engine:
    params = replace(EngineParams(), intervals=IntervalParams(coverage=coverage), **changes)
    return Engine(params)


def covered(forecasts: ForecastBatch) -> float:
    scored = forecasts.previous_lower > 0
    price = forecasts.ticks.price[scored]
    inside = (forecasts.previous_lower[scored] <= price) & (
        price <= forecasts.previous_upper[scored]
    )
    return float(inside.mean())


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_coverage_converges_to_nominal_on_a_long_heavy_tailed_stream(coverage: float) -> None:
    forecasts = engine_with(coverage).process(heavy_tailed_stream(seed=1)).forecasts
    uniform = np.array([name >= f"S{SERIES // 2:02d}" for name in forecasts.ticks.series])
    for rows in (uniform, ~uniform):
        assert abs(covered(forecasts.take(np.flatnonzero(rows))) - coverage) < 0.01
    without_calibration = IntervalParams(coverage=coverage, step=1e-9)  # a fixed quantile
    fixed = Engine(replace(EngineParams(), intervals=without_calibration))
    gaussian = fixed.process(heavy_tailed_stream(seed=1)).forecasts
    assert abs(covered(gaussian.take(np.flatnonzero(uniform))) - coverage) > 0.01


def test_an_interval_never_depends_on_a_later_tick() -> None:
    ticks = heavy_tailed_stream(seed=2, series=3, steps=400)
    before = engine_with(0.9).process(ticks).forecasts
    changed = replace(ticks, price=ticks.price.copy())
    changed.price[600:] *= np.exp(np.random.default_rng(3).normal(0, 0.2, len(ticks) - 600))
    after = engine_with(0.9).process(changed).forecasts
    np.testing.assert_array_equal(after.lower[:600], before.lower[:600])
    np.testing.assert_array_equal(after.upper[:600], before.upper[:600])
    assert not np.array_equal(after.lower[600:], before.lower[600:])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_every_interval_is_finite_and_holds_its_forecast_model_or_naive(cell: str) -> None:
    rng = np.random.default_rng(4)
    n = 6000
    price = 50.0 * np.exp(np.cumsum(rng.standard_t(2, n) * 0.02))
    price[rng.random(n) < 0.01] *= 1e6  # absurd jumps
    ticks = columns([f"S{i}" for i in rng.integers(0, 30, n)], list(range(1, n + 1)), list(price))
    model = random_stepper(ModelSpec(cell=cell, layers=2, units=8))
    params = replace(EngineParams(), features=FeatureParams(min_history=5))
    forecasts = Engine(params, model).process(ticks).forecasts
    assert forecasts.naive.any() and (~forecasts.naive).any()
    bounds = np.stack([forecasts.lower, forecasts.forecast, forecasts.upper])
    assert np.isfinite(bounds).all()
    assert (forecasts.lower <= forecasts.forecast).all()
    assert (forecasts.forecast <= forecasts.upper).all()
    assert (forecasts.lower < forecasts.upper).all()


def test_intervals_go_on_unchanged_after_the_partition_moves_to_another_engine() -> None:
    ticks = heavy_tailed_stream(seed=5, series=4, steps=300)
    cut = 700
    model = random_stepper(ModelSpec(cell="lstm", layers=1, units=4))
    params = replace(EngineParams(), features=FeatureParams(min_history=5))
    whole = Engine(params, model).process(ticks).forecasts
    first = Engine(params, model)
    first.process(ticks.take(np.arange(cut)))
    second = Engine(params, model)
    second.put_partition(first.take_partition(0))
    rest = second.process(ticks.take(np.arange(cut, len(ticks)))).forecasts
    np.testing.assert_array_equal(rest.lower, whole.lower[cut:])
    np.testing.assert_array_equal(rest.upper, whole.upper[cut:])


def test_a_new_model_starts_from_the_naive_calibration() -> None:
    ticks = heavy_tailed_stream(seed=6, series=2, steps=500)
    params = replace(EngineParams(), features=FeatureParams(min_history=5))
    engine = Engine(params, random_stepper(ModelSpec(cell="lstm", layers=1, units=4)))
    engine.process(ticks)
    engine.commit()
    calibration = engine.table.calibration[engine.table.active_slots()]
    assert not np.array_equal(calibration["model_shift"], calibration["naive_shift"])
    engine.swap_model(random_stepper(ModelSpec(cell="gru", layers=1, units=4), version="v2"))
    calibration = engine.table.calibration[engine.table.active_slots()]
    for name in FIELDS:
        np.testing.assert_array_equal(calibration[f"model_{name}"], calibration[f"naive_{name}"])


def test_a_young_series_is_not_falsely_confident() -> None:
    """One calm return is no scale: until a series has MIN_RESIDUALS returns its
    intervals keep the wide cold scale, then they narrow to its own."""
    price = 100.0 * np.exp(np.cumsum(np.full(40, 1e-5)))  # calm: 0.001 % a tick
    forecasts = engine_with(0.9).process(columns(["A"] * 40, list(range(1, 41)), list(price)))
    width = np.log(forecasts.forecasts.upper / forecasts.forecasts.lower)
    cold = 2 * IntervalParams(coverage=0.9).q0 * COLD_LOG_SIGMA
    young = MIN_RESIDUALS  # tick k has k returns behind it
    np.testing.assert_allclose(width[:young], cold)
    assert (width[young:] < cold / 100).all()
