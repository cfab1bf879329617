"""Prediction intervals: calibrated to nominal coverage, causal, always finite and ordered,
and carried with the series' state through a hand-off and a model swap."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from forecaster.core import intervals
from forecaster.core.engine import Engine, EngineParams, ForecastBatch
from forecaster.core.features import FeatureParams
from forecaster.core.intervals import (
    CALIBRATION_DTYPE,
    COLD_LOG_SIGMA,
    FIELDS,
    INTERVAL_EXPERTS,
    KINDS,
    MIN_RESIDUALS,
    MOMENTS,
    BoolArray,
    FloatArray,
    IntervalParams,
    Previous,
    new_calibration,
    restart_model,
)
from forecaster.core.ticks import TickColumns
from forecaster.model.spec import ModelSpec
from tests.support import reference_intervals as reference
from tests.support.models import random_stepper
from tests.support.ticks import columns

SERIES, STEPS = 20, 10_000
Calibration = npt.NDArray[np.void]
IntArray = npt.NDArray[np.intp]


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


# The compiled intervals (one Numba call a round) against the vectorised NumPy code they
# replaced (tests/support/reference_intervals.py). The two differ only in rounding: NumPy's
# vectorised exp, log and power may be an ulp off the C library's, which the compiled code
# calls. So float64 fields agree to a relative 1e-9, float32 ones (rounded from float64
# values that agree) to 2 ulps, and an issuing expert may differ only where the reference's
# losses tie up to that rounding, where the two's intervals are then not compared.
MAX_ULP = 2


@dataclass
class Round:
    """One round's inputs, as the engine passes them: ``observe`` then ``issue``."""

    last_price: FloatArray
    price: FloatArray
    previous_forecast: FloatArray
    forecast: FloatArray
    naive: BoolArray


def step_both(
    params: IntervalParams,
    compiled: Calibration,
    slots: IntArray,
    vectorised: Calibration,
    tick: Round,
) -> None:
    """Step both implementations through ``tick``: ``compiled`` at its rows ``slots`` and
    ``vectorised``, those rows alone (both in place); assert that they agree."""
    issuing = same_experts(compiled[slots], vectorised)
    scored = intervals.observe(
        params, compiled, slots, tick.last_price, tick.price, tick.previous_forecast
    )
    expected = reference.observe(
        params, vectorised, tick.last_price, tick.price, tick.previous_forecast
    )
    assert_calibrations_agree(compiled[slots], vectorised)
    for got, want in [(scored.lower, expected.lower), (scored.upper, expected.upper)]:
        np.testing.assert_allclose(got[issuing], want[issuing], rtol=1e-9)
    clear = issuing & ~on_a_bound(tick.price, expected)
    np.testing.assert_array_equal(scored.hit[clear], expected.hit[clear])
    issuing = same_experts(compiled[slots], vectorised)
    bounds = intervals.issue(params, compiled, slots, tick.forecast, tick.naive)
    expected_bounds = reference.issue(params, vectorised, tick.forecast, tick.naive)
    for got, want in zip(bounds, expected_bounds, strict=True):
        np.testing.assert_allclose(got[issuing], want[issuing], rtol=1e-9)


def same_experts(compiled: Calibration, vectorised: Calibration) -> BoolArray:
    naive, model = (compiled[f"{kind}_best"] == vectorised[f"{kind}_best"] for kind in KINDS)
    both: BoolArray = naive & model
    return both


def on_a_bound(price: FloatArray, previous: Previous) -> BoolArray:
    """Where a price is within rounding of a bound, so that its hit is a coin toss."""
    close = [
        np.isclose(price, bound, rtol=1e-9, atol=0) for bound in (previous.lower, previous.upper)
    ]
    return close[0] | close[1]


def assert_calibrations_agree(compiled: Calibration, vectorised: Calibration) -> None:
    for name in CALIBRATION_DTYPE.names or ():
        got, want = compiled[name], vectorised[name]
        if want.dtype == np.float32:
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            finite = ~np.isnan(want)
            np.testing.assert_array_max_ulp(got[finite], want[finite], maxulp=MAX_ULP)
        elif want.dtype == np.float64:
            close = np.isclose(
                got, want, rtol=1e-9, atol=rounding(vectorised, name), equal_nan=True
            )
            assert close.all(), f"{name}: {got[~close]} != {want[~close]}"
    for kind in KINDS:
        got, want = compiled[f"{kind}_best"], vectorised[f"{kind}_best"]
        rows = np.flatnonzero(got != want)
        loss = vectorised[f"{kind}_loss"][rows]
        chosen, least = (
            loss[np.arange(len(rows)), got[rows]],
            loss[np.arange(len(rows)), want[rows]],
        )
        ulps = np.abs(chosen.view(np.int32).astype(np.int64) - least.view(np.int32))
        assert (ulps <= MAX_ULP).all(), f"{kind}_best differs beyond a tie: rows {rows}"


def rounding(calibration: Calibration, name: str) -> FloatArray | float:
    """The absolute rounding of a float64 field: none, but for the regression's moments,
    which are products of differences of squared residuals: they cancel to about 0, where
    a relative tolerance means nothing, so theirs is relative to the squared long-run mean."""
    kind, moment = name.split("_")
    if moment not in ("cov", "var"):
        return 0.0
    with np.errstate(over="ignore"):
        scale = calibration[f"{kind}_slow"] ** 2
    return np.where(np.isfinite(scale), 1e-9 * scale, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_intervals_equal_the_vectorised_ones_along_a_hostile_stream(
    seed: int,
) -> None:
    """300 rounds of 1 to 50 of 60 series: prices from 1e-300 to 1e300, calm, wild, jumping
    or still; series new, naive or modelled; every round naive, none or some; models
    restarted now and then."""
    rng = np.random.default_rng(seed)
    params = IntervalParams(
        coverage=rng.choice([0.8, 0.9, 0.95]),
        step=rng.choice([0.005, 0.05, 0.5]),
        halflife=rng.choice([5.0, 50.0, 500.0]),
    )
    series = 60
    compiled, vectorised = new_calibration(series), new_calibration(series)
    level = 10.0 ** rng.choice([-300.0, -3.0, 0.0, 2.0, 300.0], series)
    volatility = rng.choice([1e-6, 1e-3, 1e-2, 0.3], series)
    last_price, previous_forecast = np.zeros(series), np.zeros(series)
    for _ in range(300):
        rows = rng.choice(series, rng.integers(1, 51), replace=False)
        n = len(rows)
        move = rng.normal(0.0, volatility[rows]) * (rng.random(n) > 0.1)  # some stand still
        move += np.where(rng.random(n) < 0.02, rng.choice([-7.0, 7.0], n), 0.0)  # jumps
        level[rows] = np.clip(level[rows] * np.exp(move), 1e-300, 1e300)
        price = level[rows]
        forecast = price * np.exp(rng.normal(0.0, volatility[rows]) * (rng.random(n) > 0.1))
        naive = [np.zeros(n, bool), np.ones(n, bool), rng.random(n) < 0.5][rng.integers(3)]
        tick = Round(last_price[rows], price, previous_forecast[rows], forecast, naive)
        restarted = rows[rng.random(n) < 0.02]
        for calibration in (compiled, vectorised):
            restart_rows(calibration, restarted)
        vectorised_rows = vectorised[rows]
        step_both(params, compiled, rows, vectorised_rows, tick)
        vectorised[rows] = vectorised_rows
        last_price[rows] = np.where(rng.random(n) < 0.01, 0.0, price)  # a few start again
        previous_forecast[rows] = np.where(naive, 0.0, forecast)
    assert (compiled["model_count"] >= MIN_RESIDUALS).any()


def restart_rows(calibration: Calibration, rows: IntArray) -> None:
    restarted = calibration[rows]
    restart_model(restarted)
    calibration[rows] = restarted


moments = st.sampled_from([0.0, 1e-300, 1e-12, 1e-4, 1.0, -1e-4, np.inf, np.nan]) | st.floats(0, 1)
counts = st.sampled_from([0.0, 1.0, MIN_RESIDUALS - 1.0, MIN_RESIDUALS, 1e6, -1.0, np.nan])
shifts = st.floats(-3.0, 60.0, width=32) | st.sampled_from([np.nan, np.inf])
losses = st.sampled_from([0.0, 0.01, -0.02, np.inf, np.nan]) | st.floats(-1.0, 1.0, width=32)
prices = st.floats(1e-300, 1e300)


@st.composite
def calibration_rows(draw: st.DrawFn) -> Calibration:
    """Any calibration row, reachable or not: NaN, infinite or negative moments, counts
    about MIN_RESIDUALS, thresholds beyond their clip, tied losses, any issuing expert."""
    row = new_calibration(1)
    for kind in KINDS:
        for name in MOMENTS:
            row[f"{kind}_{name}"] = draw(counts if name == "count" else moments)
        for name, values in [("shift", shifts), ("loss", losses)]:
            row[f"{kind}_{name}"] = draw(
                st.lists(values, min_size=INTERVAL_EXPERTS, max_size=INTERVAL_EXPERTS)
            )
        row[f"{kind}_best"] = draw(st.integers(0, INTERVAL_EXPERTS - 1))
    return row


def known_naive_and_nan_model_count() -> Calibration:
    """NumPy's where takes the naive scales where the model's count is not >= MIN_RESIDUALS,
    NaN included."""
    row = new_calibration(1)
    row["naive_fast"], row["naive_slow"], row["naive_count"] = 1e-4, 1e-4, 1e6
    row["model_count"] = np.nan
    return row


@given(
    st.lists(
        st.tuples(
            calibration_rows(),
            st.just(0.0) | prices,
            prices,
            st.just(0.0) | prices,
            prices,
            st.booleans(),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([0.5, 0.9, 0.99]),
)
@example([(known_naive_and_nan_model_count(), 100.0, 101.0, 100.5, 101.0, False)], 0.9)
def test_a_compiled_step_from_any_calibration_equals_the_vectorised_one(
    rows: list[tuple[Calibration, float, float, float, float, bool]], coverage: float
) -> None:
    compiled = np.concatenate([row[0] for row in rows])
    vectorised = compiled.copy()
    last_price, price, previous_forecast, forecast, naive = (
        np.array(column) for column in list(zip(*rows, strict=True))[1:]
    )
    tick = Round(last_price, price, previous_forecast, forecast, naive)
    with np.errstate(all="ignore"):
        params = IntervalParams(coverage=coverage, step=0.1)
        step_both(params, compiled, np.arange(len(rows)), vectorised, tick)
